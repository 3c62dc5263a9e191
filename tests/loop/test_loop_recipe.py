"""The loop recipe: recipes/loop.toml validates, unknown keys and bad values are named, and the defaults are the
issue's (guards of one point and 10 %)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.loop.recipe import LoopRecipe, load_loop_recipe, metric_kind

pytestmark = pytest.mark.unit

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "loop.toml"


def test_the_shipped_recipe_loads() -> None:
    recipe = load_loop_recipe(RECIPE)
    assert recipe.enabled() == ["embedder", "demonstrations"]
    assert recipe.embedder.gate.target == "ndcg@10"
    assert recipe.llm.gate.target == "answer_correctness"
    assert recipe.embedder.gate.guards == {"refusal_accuracy": 0.01, "citation_precision": 0.01,
                                           "faithfulness": 0.01, "latency_p95": 0.10, "peak_rss": 0.10}


def test_defaults_match_the_shipped_recipe() -> None:
    shipped, defaults = load_loop_recipe(RECIPE), LoopRecipe()
    assert shipped.model_dump() == defaults.model_dump()


def test_overrides_and_metric_kinds() -> None:
    recipe = load_loop_recipe(None, ["reranker.enabled=true", "reranker.gate.target=recall@10",
                                     "measure.resamples=500"])
    assert "reranker" in recipe.enabled() and recipe.reranker.gate.target == "recall@10"
    assert recipe.measure.resamples == 500
    assert [metric_kind(m) for m in ("ndcg@10", "faithfulness", "peak_rss")] == ["retrieval", "answer", "system"]


@pytest.mark.parametrize(("text", "message"), [
    ("[embeder]\nenabled = true\n", "did you mean 'embedder'"),
    ("[embedder.gate]\ntarget = 'peak_rss'\n", "cannot be a target"),
    ("[embedder.gate]\nguards = { speed = 0.1 }\n", "unknown gate metric 'speed'"),
    ("[embedder.gate]\nguards = { latency_p95 = -1 }\n", "tolerance must be >= 0"),
    ("[embedder]\nenabled = false\n[demonstrations]\nenabled = false\n", "no stage is enabled"),
    ("[data]\npii_kinds = ['passport']\n", "unknown personal-data kinds"),
    ("[llm]\nmethod = 'ppo'\n", "llm.method"),
    ("[evalset]\nunanswerable = 1.5\n", "evalset.unanswerable"),
])
def test_invalid_recipes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_loop_recipe(path)
