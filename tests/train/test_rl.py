"""GRPO/RLOO through TRL on the tiny model: question rows, a toy task whose mean reward must rise, the handbook
rows with held-out grading, resume, and divergence caught in sampling."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest
from train_helpers import tiny_overrides, write_jsonl

from ragtune.train.data import DataError
from ragtune.train.recipe import RecipeError, RewardsSection, load_recipe
from ragtune.train.rewards import Rewards, Sample
from ragtune.train.rl import check_batch, question_rows, train_rl
from ragtune.train.run import TrainingError

DATA = Path(__file__).resolve().parents[2] / "recipes" / "data"
TOY_QUESTIONS = ["Say something.", "Write a word.", "Reply now.", "Any answer?", "Go ahead.", "Tell me more.",
                 "Speak up.", "Your turn."]


def letters(samples: Sequence[Sample]) -> list[float | None]:
    """The toy reward: the share of an answer's characters that are lower-case ASCII letters."""
    return [sum(c.islower() and c.isascii() for c in s.answer) / max(1, len(s.answer)) for s in samples]


TOY = Rewards({"letters": (1.0, letters)})


@pytest.fixture()
def toy_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "toy.jsonl", [{"question": q, "contexts": ["A source."]} for q in TOY_QUESTIONS])


def rl_overrides(model_dir: str, data: Path, run_dir: Path, **extra: object) -> list[str]:
    return tiny_overrides(model_dir, data, run_dir, **{
        "data.eval_split": 0.0, "rl.num_generations": 4, "rl.max_completion_length": 8, "train.batch_size": 4,
        "train.grad_accum": 2, "lora.dropout": 0.0, **extra})


@pytest.mark.unit
class TestQuestionRows:
    def test_rows_become_rag_prompts_with_reward_columns(self) -> None:
        rows = question_rows(DATA / "handbook-rl-heldout.jsonl")
        row = next(r for r in rows if r["answerable"])
        assert row["prompt"][0]["role"] == "system" and "[1]" in row["prompt"][-1]["content"]
        assert row["reference"].endswith(f"[{row['source']}].") or row["reference"].endswith(f"[{row['source']}]。")
        assert {r["language"] for r in rows} == {"en", "zh"} and any(r["answerable"] is False for r in rows)

    def test_sources_come_from_a_search_when_missing(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Refund window?"}])
        with pytest.raises(DataError, match="rl.kb"):
            question_rows(path)
        asked = []

        def search(question: str, k: int) -> list[str]:
            asked.append((question, k))
            return ["Refunds within 14 days."]

        rows = question_rows(path, retrieve=search, context_hits=2)
        assert asked == [("Refund window?", 2)] and rows[0]["contexts"] == ["Refunds within 14 days."]

    def test_feedback_rows_give_their_reference(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "fb.jsonl", [
            {"question": "q1", "answer": "a1 [1].", "rating": "up", "contexts": ["s"]},
            {"question": "q2", "answer": "bad", "rating": "down", "contexts": ["s"], "corrected_answer": "good [1]."},
            {"question": "q3", "answer": "bad", "rating": "down", "contexts": ["s"]},
        ])
        assert [r["reference"] for r in question_rows(path)] == ["a1 [1].", "good [1].", None]

    @pytest.mark.parametrize(("row", "message"), [
        ({"question": ""}, "non-empty 'question'"),
        ({"question": "q", "contexts": "text"}, "list of source texts"),
        ({"question": "q", "contexts": ["s"], "answerable": "yes"}, "true or false"),
        ({"question": "q", "contexts": ["s"], "source": 2}, "one of its 1 sources"),
    ])
    def test_bad_rows_name_the_row(self, tmp_path: Path, row: dict[str, object], message: str) -> None:
        with pytest.raises(DataError, match=message):
            question_rows(write_jsonl(tmp_path / "bad.jsonl", [row]))


@pytest.mark.unit
class TestRecipe:
    def test_shipped_recipes_load(self) -> None:
        recipes = DATA.parent
        grpo = load_recipe(recipes / "grpo.toml", method="grpo")
        assert grpo.rl.algorithm == "grpo" and grpo.rl.num_generations == 4 and grpo.rewards.citation == 1.0
        assert (recipes.parent / grpo.data.path).is_file() and (recipes.parent / grpo.data.eval_path).is_file()
        check_batch(grpo)
        reward = load_recipe(recipes / "reward.toml", method="reward")
        assert reward.model.finetune == "lora" and (recipes.parent / reward.data.path).is_file()

    def test_groups_must_fit_the_batch(self) -> None:
        recipe = load_recipe(None, ["rl.num_generations=3", "train.batch_size=4", "train.grad_accum=1"],
                             method="grpo")
        with pytest.raises(RecipeError, match="not a multiple of rl.num_generations = 3"):
            check_batch(recipe)

    def test_ppo_is_refused_with_the_reason(self, toy_file: Path) -> None:
        recipe = load_recipe(None, [f"data.path={toy_file}", "rl.algorithm=ppo"], method="grpo")
        with pytest.raises(RecipeError, match="TRL 1.16 no longer ships PPOTrainer"):
            train_rl(recipe, TOY)

    def test_a_typo_in_the_rl_section_is_caught(self) -> None:
        with pytest.raises(RecipeError, match="did you mean 'rl.num_generations'"):
            load_recipe(None, ["rl.num_generation=8"], method="grpo")


def mean_reward(history: list[dict[str, float]]) -> list[float]:
    return [h["reward"] for h in history if "reward" in h]


@pytest.fixture(scope="module")
def peaked_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> str:
    """The tiny model with large initial weights: its next-token distributions are peaked, as a trained model's
    are, so a few sampled answers differ in reward and RL has something to choose between (a near-uniform policy
    over 49k tokens has not)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.initializer_range = 0.5
    target = tmp_path_factory.mktemp("peaked")
    AutoModelForCausalLM.from_config(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(target)
    return str(target)


@pytest.mark.integration
@pytest.mark.slow
def test_grpo_raises_the_mean_reward_on_a_toy_task(peaked_model_dir: str, toy_file: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, rl_overrides(peaked_model_dir, toy_file, tmp_path / "run", **{
        "train.max_steps": 8, "train.learning_rate": 0.1, "rl.beta": 0.0, "model.finetune": "full",
        "train.lr_scheduler": "constant"}), method="grpo")
    record = train_rl(recipe, TOY)
    rewards = mean_reward(record["log_history"])
    assert len(rewards) == 8
    assert statistics.fmean(rewards[-3:]) > statistics.fmean(rewards[:3]) + 0.05
    assert (tmp_path / "run" / "model.safetensors").is_file()  # full fine-tune: the model itself


@pytest.mark.integration
@pytest.mark.slow
def test_handbook_questions_with_held_out_grades(tiny_model_dir: str, tmp_path: Path) -> None:
    held = [json.loads(line) for line in (DATA / "handbook-rl-heldout.jsonl").read_text().splitlines()]
    eval_file = write_jsonl(tmp_path / "held.jsonl", held[:2] + held[-2:])
    recipe = load_recipe(None, rl_overrides(tiny_model_dir, DATA / "handbook-rl.jsonl", tmp_path / "run", **{
        "data.max_examples": 2, "data.eval_path": str(eval_file), "data.max_seq_len": 1024,
        "train.max_steps": 1}), method="grpo")
    record = train_rl(recipe, Rewards.from_section(RewardsSection()))
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()  # served with --llm-adapter
    logged = next(h for h in record["log_history"] if "reward" in h)
    assert {"rewards/citation/mean", "rewards/refusal/mean", "rewards/correctness/mean"} <= set(logged)
    heldout = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["heldout"]
    for when in ("before", "after"):
        assert heldout[when]["questions"] == 4 and heldout[when]["unanswerable"] == 2
        assert set(heldout[when]["rewards"]) == {"citation", "refusal", "correctness", "length"}
    assert record["data"]["rewards"] == {"citation": 1.0, "refusal": 1.0, "correctness": 1.0, "length": 0.2}


@pytest.mark.integration
@pytest.mark.slow
def test_rloo_and_resume(tiny_model_dir: str, toy_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    settings = {"rl.algorithm": "rloo", "train.eval_steps": 2}
    first = train_rl(load_recipe(None, rl_overrides(tiny_model_dir, toy_file, run_dir, **settings, **{
        "train.max_steps": 2}), method="grpo"), TOY)
    assert first["metrics"]["global_step"] == 2 and (run_dir / "checkpoint-2").is_dir()
    with pytest.raises(TrainingError, match="already holds a run"):
        train_rl(load_recipe(None, rl_overrides(tiny_model_dir, toy_file, run_dir, **settings), method="grpo"), TOY)
    resumed = train_rl(load_recipe(None, rl_overrides(tiny_model_dir, toy_file, run_dir, **settings, **{
        "train.max_steps": 4}), method="grpo"), TOY, resume=True)
    assert resumed["metrics"]["global_step"] == 4
    assert [h["step"] for h in resumed["log_history"] if "reward" in h][-1] == 4


@pytest.mark.integration
def test_a_diverged_policy_stops_with_a_diagnosis(tiny_model_dir: str, toy_file: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    recipe = load_recipe(None, rl_overrides(str(broken), toy_file, tmp_path / "run"), method="grpo")
    with pytest.raises(TrainingError, match=r"diverged: the policy's next-token probabilities hold NaN or inf at "
                                            r"step 1 \(learning rate .*, precision fp32"):
        train_rl(recipe, TOY)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"
