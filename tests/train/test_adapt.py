"""`kb adapt`: label-free adaptation of a small knowledge base, end to end with real training and re-embedding."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.kb import KnowledgeBase
from ragtune.train.adapt import STATE_FILE, AdaptConfig, adapt_knowledge_base, plan
from ragtune.types import Block, BlockType, Document

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "codenames.json").read_text())
_NAMES = itertools.count()


def _questions(pid: str, text: str) -> list[str]:
    """Two questions a small LLM might write for a passage: they use the system's code name, which the bundled
    embedder has never seen, and the passage's own words."""
    name = FIXTURE["names"][pid.rstrip("0123456789")]
    words = [w.strip(".,") for w in text.split() if len(w) > 4][:4]
    return [f"What does {name} do with {' '.join(words[:2])}?", f"How does {name} handle {' '.join(words[2:4])}?"]


class QuestionWriter:
    """Writes the questions above for whichever fixture passage a prompt holds; counts prompts."""

    def __init__(self) -> None:
        self.name = f"question-writer-{next(_NAMES)}"
        self.prompts = 0

    def stream(self, messages: list[dict[str, str]], **params: object) -> Iterator[str]:
        self.prompts += 1
        prompt = messages[-1]["content"]
        for pid, text in FIXTURE["passages"].items():
            if text in prompt:
                yield json.dumps(_questions(pid, text))
                return

    def chat(self, messages: list[dict[str, str]], **params: object) -> str:
        return "".join(self.stream(messages, **params))


def _kb(path: Path) -> KnowledgeBase:
    kb = KnowledgeBase.open(path, create=True)
    docs = [(f"fixture:{pid}", Document.assemble([Block(type=BlockType.PARAGRAPH, text=text)],
                                                 source=f"fixture:{pid}", source_type="txt"))
            for pid, text in FIXTURE["passages"].items()]
    kb.ingest_documents(docs)
    return kb


CONFIG = AdaptConfig(budget_minutes=30, batch_size=8, max_epochs=1.0, learning_rate=5e-5, min_gain=-1.0)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KnowledgeBase, dict, QuestionWriter]]:
    cache = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGTUNE_MODEL_CACHE", str(cache))
        kb = _kb(tmp_path_factory.mktemp("adapt") / "kb")
        writer = QuestionWriter()
        kb.llm = writer
        before = kb.stats()
        report = adapt_knowledge_base(kb, CONFIG)
        yield kb, {"report": report, "before": before}, writer
        kb.close()


@pytest.mark.integration
@pytest.mark.slow
class TestAdapt:
    def test_it_writes_questions_trains_judges_and_switches_the_kb(self, adapted) -> None:
        kb, data, writer = adapted
        report = data["report"]
        assert writer.prompts == len(FIXTURE["passages"])
        assert report["questions"]["kept"] >= 30 and report["heldout_questions"] >= 5
        assert report["negatives"]["with_negatives"] > 0 and report["train"]["steps"] > 0
        for side in ("before", "after"):
            assert 0 <= report[side]["ndcg_cut_10"] <= 1
        assert report["decision"]["reembedded"] is True
        stats = kb.stats()
        assert stats["embedder"] == str((kb.path / "adapt" / "embedder").resolve()) == report["decision"]["embedder"]
        assert stats["embedder_checkpoint"] != data["before"]["embedder_checkpoint"]
        assert stats["reembed_pending"] is None and stats["chunks"] == data["before"]["chunks"]
        assert kb.verify()["ok"]
        hit = kb.search("When does Heron pay?", k=3)[0]
        assert hit.document_id and hit.text
        saved = json.loads((kb.path / "adapt" / STATE_FILE).read_text())
        assert saved["decision"]["reembedded"] is True and "timings" in saved
        # Training gets the plan's share of the budget as a hard limit (the plan only estimates step times).
        run = json.loads((kb.path / "adapt" / "embedder" / "run.json").read_text())
        assert run["recipe"]["train"]["max_minutes"] == round(saved["plan"]["train_seconds"] / 60, 2) > 0
        assert run["metrics"]["time_limit_minutes"] == run["recipe"]["train"]["max_minutes"]
        assert report["train"]["stopped_by_time_limit_at_step"] is None  # this small run fits its budget

    def test_a_finished_run_is_reported_again_without_asking_or_training(self, adapted) -> None:
        kb, data, writer = adapted
        prompts = writer.prompts
        again = adapt_knowledge_base(kb, CONFIG)
        assert writer.prompts == prompts
        assert again == data["report"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_worse_embedder_is_not_swapped_in(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path / "cache"))
    with _kb(tmp_path / "kb") as kb:
        kb.llm = QuestionWriter()
        before = kb.stats()
        report = adapt_knowledge_base(kb, AdaptConfig(budget_minutes=30, batch_size=8, max_epochs=0.25,
                                                      min_gain=1.0))
        assert report["decision"] == {"reembedded": False, "embedder": before["embedder"]}
        stats = kb.stats()
        assert stats["embedder_checkpoint"] == before["embedder_checkpoint"] and stats["reembed_pending"] is None


@pytest.mark.unit
def test_the_budget_must_cover_one_reembed() -> None:
    with pytest.raises(ConfigError, match="--budget"):
        plan(AdaptConfig(budget_minutes=5), total_chunks=10_000, embed_seconds_per_chunk=0.05)
    p = plan(AdaptConfig(budget_minutes=60), total_chunks=10_000, embed_seconds_per_chunk=0.05)
    assert p.question_seconds > 0 and p.train_seconds > 0 and p.reembed_seconds < 60 * 60
    with pytest.raises(ConfigError, match="heldout_share"):
        AdaptConfig(heldout_share=1.5)
