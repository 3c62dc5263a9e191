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

    def test_ppo_settings_are_checked(self) -> None:
        recipe = load_recipe(None, ["rl.algorithm=ppo", "rl.gae_lambda=0.9", "rl.vf_coef=0.5"], method="grpo")
        assert (recipe.rl.algorithm, recipe.rl.gae_lambda, recipe.rl.vf_coef) == ("ppo", 0.9, 0.5)
        with pytest.raises(RecipeError, match="rl.gamma"):
            load_recipe(None, ["rl.algorithm=ppo", "rl.gamma=1.5"], method="grpo")

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
def test_ppo_raises_the_mean_reward_on_a_toy_task_and_resumes_with_its_value_head(
        peaked_model_dir: str, toy_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from ragtune.train.ppo import VALUE_HEAD_FILE

    run_dir = tmp_path / "run"
    settings = {"rl.algorithm": "ppo", "train.learning_rate": 0.1, "rl.beta": 0.0, "model.finetune": "full",
                "train.lr_scheduler": "constant", "train.eval_steps": 4}
    record = train_rl(load_recipe(None, rl_overrides(peaked_model_dir, toy_file, run_dir, **settings, **{
        "train.max_steps": 8}), method="grpo"), TOY)
    history = record["log_history"]
    rewards = mean_reward(history)
    assert len(rewards) == 8
    assert statistics.fmean(rewards[-3:]) > statistics.fmean(rewards[:3]) + 0.05
    logged = [h for h in history if "reward" in h]
    assert all("value_loss" in h and "value/mean" in h for h in logged)
    assert logged[-1]["value/mean"] != 0  # the critic learned something from its zero start
    head = load_file(str(run_dir / VALUE_HEAD_FILE))
    assert head["weight"].shape[0] == 1 and (run_dir / "checkpoint-8" / VALUE_HEAD_FILE).is_file()
    resumed = train_rl(load_recipe(None, rl_overrides(peaked_model_dir, toy_file, run_dir, **settings, **{
        "train.max_steps": 10}), method="grpo"), TOY, resume=True)
    assert resumed["metrics"]["global_step"] == 10
    # resumed with the checkpoint's head, not a fresh zero one: its first values are not all zero
    first_resumed = next(h for h in resumed["log_history"] if "reward" in h and h["step"] == 9)
    assert first_resumed["value/mean"] != 0


@pytest.mark.unit
@pytest.mark.parametrize(("error", "named"), [
    ("CUDA error: device-side assert triggered\nCUDA kernel errors might be reported later", "device-side assert"),
    ("probability tensor contains either `inf`, `nan` or element < 0", "hold NaN or inf"),
])
def test_sampling_failures_of_a_diverged_policy_are_diagnosed(error: str, named: str) -> None:
    from types import SimpleNamespace

    from ragtune.train.rl import _SamplingGuard

    class Sampler:
        def _generate_and_score_completions(self, inputs: object) -> object:
            raise RuntimeError(error)

    class Guarded(_SamplingGuard, Sampler):
        state = SimpleNamespace(global_step=7)
        args = SimpleNamespace(bf16=True, fp16=False, learning_rate=5e-5)

    with pytest.raises(TrainingError, match=rf"diverged: .*{named}.* at step 8 .*precision bf16.*model.precision"):
        Guarded()._generate_and_score_completions({})

    class Other(Sampler):
        def _generate_and_score_completions(self, inputs: object) -> object:
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):  # not divergence: passed on unchanged
        type("G", (_SamplingGuard, Other), {"state": Guarded.state, "args": Guarded.args})(
        )._generate_and_score_completions({})


@pytest.mark.unit
class TestPPOArithmetic:
    def test_gae_with_lambda_one_gives_reward_to_go_minus_value(self) -> None:
        import torch

        from ragtune.train.ppo import gae, terminal_rewards

        mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
        rewards = terminal_rewards(torch.tensor([2.0, -1.0]), mask)
        assert rewards.tolist() == [[0, 0, 2.0], [0, -1.0, 0]]
        values = torch.tensor([[0.5, 1.0, 1.5], [0.2, 0.4, 9.0]])  # 9.0 lies past the second row's end
        advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
        assert torch.allclose(advantages, torch.tensor([[1.5, 1.0, 0.5], [-1.2, -1.4, 0.0]]))
        assert torch.allclose(returns, torch.tensor([[2.0, 2.0, 2.0], [-1.0, -1.0, 0.0]]))

    def test_gae_with_lambda_zero_is_the_one_step_error(self) -> None:
        import torch

        from ragtune.train.ppo import gae

        mask = torch.ones(1, 3)
        values = torch.tensor([[0.5, 1.0, 1.5]])
        advantages, _ = gae(torch.tensor([[0.0, 0.0, 2.0]]), values, mask, gamma=0.9, lam=0.0)
        assert torch.allclose(advantages, torch.tensor([[0.9 * 1.0 - 0.5, 0.9 * 1.5 - 1.0, 2.0 - 1.5]]))

    def test_whitening_ignores_padding(self) -> None:
        import torch

        from ragtune.train.ppo import whiten

        mask = torch.tensor([[1, 1, 0]])
        out = whiten(torch.tensor([[1.0, 3.0, 100.0]]), mask)
        assert torch.allclose(out, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_handbook_questions_with_held_out_grades(tiny_model_dir: str, tmp_path: Path, algorithm: str) -> None:
    held = [json.loads(line) for line in (DATA / "handbook-rl-heldout.jsonl").read_text().splitlines()]
    eval_file = write_jsonl(tmp_path / "held.jsonl", held[:2] + held[-2:])
    recipe = load_recipe(None, rl_overrides(tiny_model_dir, DATA / "handbook-rl.jsonl", tmp_path / "run", **{
        "data.max_examples": 2, "data.eval_path": str(eval_file), "data.max_seq_len": 1024,
        "train.max_steps": 1, "rl.algorithm": algorithm}), method="grpo")
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
