"""Reward models: pairs from feedback (👍/👎 and corrections), training with TRL's RewardTrainer on the tiny
model, scoring held-out handbook pairs (the cited answer must win), resume, and the loss guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import tiny_overrides, write_jsonl

from ragtune.errors import ConfigError
from ragtune.train.data import DataError
from ragtune.train.recipe import RecipeError, load_recipe
from ragtune.train.reward import RewardModel, load_pairs, rated_pairs, score_pairs, train_reward
from ragtune.train.rewards import Sample
from ragtune.train.run import TrainingError

DATA = Path(__file__).resolve().parents[2] / "recipes" / "data"


def pairs_of_kind(name: str, kind: str, limit: int) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["kind"] == kind][:limit]


@pytest.mark.unit
class TestRatedPairs:
    def test_up_over_down_and_corrections(self) -> None:
        rows = [
            {"question": "Refund window?", "answer": "14 days [1].", "rating": "up", "contexts": ["14 days."]},
            {"question": "Refund window?", "answer": "30 days [1].", "rating": "down", "contexts": ["14 days."]},
            {"question": "Refund window?", "answer": "A year.", "rating": "down", "contexts": ["14 days."],
             "corrected_answer": "Within 14 days [1]."},
            {"question": "Refund window?", "answer": "No idea.", "rating": "down", "contexts": ["other sources"]},
            {"question": "Who approves?", "answer": "Marta [1].", "rating": "up"},
        ]
        pairs = rated_pairs(rows)
        found = {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}
        assert found == {("Within 14 days [1].", "A year."), ("14 days [1].", "30 days [1]."),
                         ("14 days [1].", "A year."), ("Within 14 days [1].", "30 days [1].")}
        # Same question, other sources: a different prompt, never paired with the first group.
        assert all("[1] 14 days." in p["prompt"][-1]["content"] for p in pairs)
        assert len(pairs) == len(found)

    def test_feedback_file_without_pairs_is_a_clear_error(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "fb.jsonl", [{"question": "q", "answer": "a", "rating": "up"}])
        with pytest.raises(DataError, match="no question has both"):
            load_pairs(path)

    def test_bad_rating(self) -> None:
        with pytest.raises(DataError, match="row 1"):
            rated_pairs([{"question": "q", "answer": "a", "rating": "meh"}])

    def test_preference_files_load_as_conversations(self) -> None:
        pairs = load_pairs(DATA / "handbook-pairs-heldout.jsonl")
        assert len(pairs) >= 100
        assert pairs[0]["chosen"][0]["role"] == "assistant" and pairs[0]["prompt"][0]["role"] == "system"


@pytest.mark.unit
def test_the_fixture_pairs_cover_both_languages_and_every_kind() -> None:
    rows = [json.loads(line) for name in ("handbook-pairs.jsonl", "handbook-pairs-heldout.jsonl")
            for line in (DATA / name).read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200
    assert {r["language"] for r in rows} == {"en", "zh"}
    assert {r["kind"] for r in rows} == {"wrong_number", "uncited", "invented", "needless_refusal",
                                         "invented_answer", "irrelevant_copy"}
    held_facts = {r["fact"] for r in rows[-108:]}
    train_facts = {json.loads(line)["fact"] for line in (DATA / "handbook-pairs.jsonl").read_text().splitlines()}
    assert not held_facts & train_facts  # held-out pairs are of facts the training never shows


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> Path:
    """A tiny reward model trained on cited ≻ uncited handbook pairs (EN and ZH)."""
    root = tmp_path_factory.mktemp("reward")
    train = pairs_of_kind("handbook-pairs.jsonl", "uncited", 48)
    data = write_jsonl(root / "pairs.jsonl", train)
    recipe = load_recipe(None, tiny_overrides(tiny_model_dir, data, root / "run", **{
        "model.finetune": "full", "data.max_seq_len": 512, "data.eval_split": 0.0, "train.epochs": 2,
        "train.learning_rate": 1e-3, "train.grad_accum": 1}), method="reward")
    record = train_reward(recipe)
    assert record["status"] == "finished" and record["method"] == "reward"
    return root / "run"


@pytest.mark.integration
@pytest.mark.slow
def test_the_reward_model_prefers_the_cited_answer(reward_run: Path, tmp_path: Path) -> None:
    held = write_jsonl(tmp_path / "held.jsonl", pairs_of_kind("handbook-pairs-heldout.jsonl", "uncited", 24))
    report = score_pairs(reward_run, held)
    assert report["pairs"] == 24
    assert report["accuracy"] >= 0.9 and report["mean_margin"] > 0
    assert set(report["by_language"]) == {"en", "zh"}
    assert report["by_kind"]["uncited"]["accuracy"] == report["accuracy"]
    # A cited answer is longer by its marker, so on this kind the length rule is right too: the point of the
    # baseline is the other kinds (see bench/train_rl_reward.py).
    assert report["length_baseline"]["rule"] == "longer reply wins"


@pytest.mark.integration
@pytest.mark.slow
def test_loaded_model_scores_samples_like_pairs(reward_run: Path) -> None:
    model = RewardModel(reward_run)
    contexts = ("Receipts must be submitted within 30 days of returning.",)
    cited, uncited = model.score([
        Sample("When are receipts due?", "Receipts must be submitted within 30 days of returning [1].", contexts),
        Sample("When are receipts due?", "Receipts must be submitted within 30 days of returning.", contexts),
    ])
    assert cited > uncited


@pytest.mark.integration
def test_a_run_of_another_method_is_not_a_reward_model(lora_run: Path) -> None:
    with pytest.raises(ConfigError, match="'sft' run, not a reward model"):
        RewardModel(lora_run)


@pytest.mark.unit
def test_qlora_reward_models_are_refused(tmp_path: Path) -> None:
    recipe = load_recipe(None, ["model.finetune=qlora", f"data.path={DATA / 'handbook-pairs.jsonl'}"],
                         method="reward")
    with pytest.raises(RecipeError, match="qlora"):
        train_reward(recipe)


@pytest.mark.integration
@pytest.mark.slow
def test_resume_and_nan_guard(tiny_model_dir: str, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs_of_kind("handbook-pairs.jsonl", "uncited", 8))
    settings = {"data.max_seq_len": 512, "data.eval_split": 0.0, "train.grad_accum": 1}
    run_dir = tmp_path / "run"
    first = train_reward(load_recipe(None, tiny_overrides(tiny_model_dir, data, run_dir, **settings, **{
        "train.epochs": 1}), method="reward"))
    assert first["metrics"]["global_step"] == 2
    resumed = train_reward(load_recipe(None, tiny_overrides(tiny_model_dir, data, run_dir, **settings, **{
        "train.epochs": 2}), method="reward"), resume=True)
    assert resumed["metrics"]["global_step"] == 4
    assert [h["step"] for h in resumed["log_history"] if "loss" in h][-1] == 4

    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    recipe = load_recipe(None, tiny_overrides(str(broken), data, tmp_path / "nan", **settings), method="reward")
    with pytest.raises(TrainingError, match=r"diverged: loss is nan at step 1"):
        train_reward(recipe)
    assert json.loads((tmp_path / "nan" / "run.json").read_text())["status"] == "diverged"
