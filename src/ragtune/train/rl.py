"""Online reinforcement learning on knowledge-base questions (GRPO, RLOO or PPO on TRL) with rewards ragtune
verifies itself: cited claims the sources support, refusing exactly when the sources lack the answer,
containing the reference answer, and staying short — optionally plus a reward model's score.

Each training row is a question with the numbered sources the model answers from::

    {"question": "...", "contexts": ["source text", ...], "reference": "correct answer [2]." (optional),
     "answerable": true | false (optional), "source": 2 (optional), "language": "en" | "zh" (optional)}

Rows without ``contexts`` get them from a knowledge base's search (``rl.kb``; the caller passes the search
function). ragtune's feedback export also works: a corrected or 👍 answer becomes the reference. The prompt
is the RAG prompt the pipeline builds, so the adapter learns on what it will be served. Held-out questions
(``data.eval_path`` or ``data.eval_split``) are answered greedily before and after training and graded
(right+cited, false and correct refusals, mean reward); run.json keeps both.

``rl.algorithm = "ppo"`` trains a value head beside the policy and uses per-token GAE advantages instead of the
group baseline (:mod:`ragtune.train.ppo`).
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.files import atomic_write_json
from ragtune.train.data import DataError, data_hash, feedback_prompt, read_rows, split_eval
from ragtune.train.device import DevicePlan, plan_device
from ragtune.train.evaluation import generate_answers
from ragtune.train.model import load_base, lora_config
from ragtune.train.recipe import Recipe, RecipeError
from ragtune.train.rewards import Rewards, Sample, grade_table
from ragtune.train.run import RUN_FILE, TrainingError, guarded, run_directory, train_and_record, trainer_arguments

log = logging.getLogger(__name__)

#: Finds the sources of a question: (question, how many) -> source texts, best first.
Retrieve = Callable[[str, int], list[str]]

# ---------------------------------------------------------------------------------------------- data


def question_rows(path: str | Path, *, retrieve: Retrieve | None = None, context_hits: int = 3,
                  system_prompt: str = "") -> list[dict[str, Any]]:
    """Training rows (prompt + the columns the rewards read) from a questions file or a feedback export."""
    rows = []
    for number, row in enumerate(read_rows(path), 1):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{path} row {number}: needs a non-empty 'question' (rows: question, contexts?, "
                            "reference?, answerable?, source?, language?)")
        contexts = row.get("contexts")
        if contexts is None:
            if retrieve is None:
                raise DataError(f"{path} row {number} has no 'contexts' — give the sources in the file, or a "
                                "knowledge base to search: --set rl.kb=./kb")
            contexts = retrieve(question, context_hits)
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise DataError(f"{path} row {number}: 'contexts' must be a list of source texts")
        reference = row.get("reference")
        if "rating" in row:  # a feedback export row: its correction, or the answer people liked
            reference = row.get("corrected_answer") or (row.get("answer") if row["rating"] == "up" else None)
        answerable, source = row.get("answerable"), row.get("source")
        if answerable is not None and not isinstance(answerable, bool):
            raise DataError(f"{path} row {number}: 'answerable' must be true or false, got {answerable!r}")
        if source is not None and (not isinstance(source, int) or not 1 <= source <= len(contexts)):
            raise DataError(f"{path} row {number}: 'source' must be the number of one of its {len(contexts)} "
                            f"sources, got {source!r}")
        rows.append({
            "prompt": feedback_prompt(question, contexts, system_prompt),
            "question": question, "contexts": contexts, "reference": reference or None,
            "answerable": answerable, "source": source, "language": row.get("language"),
        })
    return rows


def read_questions(recipe: Recipe, retrieve: Retrieve | None = None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Training and held-out questions of ``recipe`` and what run.json records of them."""
    data = recipe.data
    if not data.path:
        raise RecipeError("data.path is not set — give the questions: --set data.path=questions.jsonl")
    options: dict[str, Any] = {"retrieve": retrieve, "context_hits": recipe.rl.context_hits,
                               "system_prompt": data.system_prompt}
    rows = question_rows(data.path, **options)
    if data.max_examples:
        rows = rows[: data.max_examples]
    if data.eval_path:
        train, held = rows, question_rows(data.eval_path, **options)
    else:
        train, held = split_eval(rows, data.eval_split, recipe.train.seed)
    info = {"path": str(Path(data.path)), "sha256": data_hash(data.path), "eval_path": data.eval_path or None,
            "train_examples": len(train), "eval_examples": len(held),
            "answerable": sum(r["answerable"] is True for r in train),
            "unanswerable": sum(r["answerable"] is False for r in train)}
    log.info("%d training and %d held-out questions from %s", len(train), len(held), data.path)
    return train, held, info


def samples_of(rows: Sequence[dict[str, Any]], answers: Sequence[str]) -> list[Sample]:
    """Rows and their answers as reward samples."""
    return [
        Sample(question=r["question"], answer=a, contexts=tuple(r["contexts"]), reference=r["reference"],
               answerable=r["answerable"], source=r["source"], language=r["language"])
        for r, a in zip(rows, answers, strict=True)
    ]


def evaluate_policy(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], rewards: Rewards, *,
                    max_new_tokens: int) -> dict[str, Any]:
    """Greedy answers to held-out questions, graded: the rates of :func:`grade_table`, the mean reward and each
    reward's mean."""
    was_training = model.training
    model.eval()
    answers = generate_answers(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens)
    model.train(was_training)
    samples = samples_of(rows, answers)
    parts = rewards.breakdown(samples)
    report = grade_table(samples)
    report["mean_reward"] = round(statistics.fmean(rewards.total(samples)), 4)
    report["rewards"] = {
        name: round(statistics.fmean(v for v in values if v is not None), 4) if any(v is not None for v in values)
        else None
        for name, values in parts.items()
    }
    report["samples"] = [{"question": s.question, "answer": s.answer} for s in samples[:6]]
    return report


# ---------------------------------------------------------------------------------------------- training


# torch.multinomial's complaint about a distribution holding NaN, inf or negative probabilities; on a CUDA GPU the
# same check is a device-side assert (seen on an H200 with a bf16 policy: docs/training.md).
_NOT_FINITE = re.compile(r"\b(?:nan|inf)\b", re.IGNORECASE)
_DEVICE_ASSERT = "device-side assert"


class _SamplingGuard:
    """Mixed into TRL's online trainers: a policy whose probabilities turned NaN/inf fails in sampling, before
    any loss exists; that is divergence too, and is reported as such."""

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        try:
            return super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        except RuntimeError as exc:
            text = str(exc)
            on_gpu = _DEVICE_ASSERT in text
            if not (_NOT_FINITE.search(text) or on_gpu):
                raise
            state, args = self.state, self.args  # type: ignore[attr-defined]
            precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
            what = ("sampling stopped on a CUDA device-side assert, which torch raises there for NaN or inf "
                    "next-token probabilities" if on_gpu else "the policy's next-token probabilities hold NaN or inf")
            raise TrainingError(
                f"training diverged: {what} at step {state.global_step + 1} (learning rate "
                f"{args.learning_rate:.3g}, precision {precision}; {text.splitlines()[0] if text else ''}) — lower "
                "train.learning_rate, use model.precision = 'fp32', and resume from the last checkpoint with --resume"
                + (" (in a new process: the GPU is unusable after the assert)" if on_gpu else "")
            ) from exc


def _trainer_and_config(recipe: Recipe, arguments: dict[str, Any], weights: list[float]) -> tuple[type, Any]:
    rl = recipe.rl
    common = {
        **arguments,
        "num_generations": rl.num_generations,
        "max_completion_length": rl.max_completion_length,
        "temperature": rl.temperature,
        "top_p": rl.top_p,
        "beta": rl.beta,
        "epsilon": rl.epsilon,
        "num_iterations": rl.iterations,
        "reward_weights": weights,
        "shuffle_dataset": True,
    }
    if rl.algorithm == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOTrainer, RLOOConfig(**common)
    from trl import GRPOConfig, GRPOTrainer

    config = GRPOConfig(**common, loss_type=rl.loss_type, scale_rewards=rl.scale_rewards)
    if rl.algorithm == "ppo":
        from ragtune.train.ppo import ppo_trainer_class

        return ppo_trainer_class(recipe), config
    return GRPOTrainer, config


def check_batch(recipe: Recipe) -> None:
    """Every generation batch must hold whole groups: batch_size × grad_accum a multiple of num_generations."""
    total = recipe.train.batch_size * recipe.train.grad_accum
    if total % recipe.rl.num_generations:
        raise RecipeError(
            f"train.batch_size × train.grad_accum = {total} answers per step is not a multiple of "
            f"rl.num_generations = {recipe.rl.num_generations} — each question's answers must be judged together; "
            f"e.g. --set train.batch_size={recipe.rl.num_generations}"
        )


def recipe_rewards(recipe: Recipe) -> Rewards:
    """The rewards of the recipe's [rewards] section, with its reward model loaded when it is weighted."""
    section = recipe.rewards
    reward_model = None
    if section.reward_model:
        if not section.model:
            raise RecipeError("rewards.reward_model is weighted but rewards.model is not set — give the run "
                              "directory of 'ragtune train reward': --set rewards.model=runs/reward-001")
        from ragtune.train.reward import RewardModel

        reward_model = RewardModel(section.model)
    try:
        return Rewards.from_section(section, reward_model=reward_model)
    except ValueError as exc:
        raise RecipeError(f"[rewards]: {exc}") from exc


def train_rl(
    recipe: Recipe, rewards: Rewards | None = None, *, resume: bool = False, plan: DevicePlan | None = None,
    retrieve: Retrieve | None = None,
) -> dict[str, Any]:
    """Run GRPO (or RLOO, or PPO) as ``recipe`` says, rewarding answers with ``rewards`` (default: the recipe's
    [rewards]); returns the run record (also written to run.json, with the held-out grades before and after
    under metrics.heldout). ``retrieve`` finds the sources of questions that carry none."""
    from datasets import Dataset

    from ragtune.llm.local import chat_template

    if recipe.method != "grpo":
        raise RecipeError(f"train_rl got a '{recipe.method}' recipe — run it with 'ragtune train {recipe.method}'")
    check_batch(recipe)
    rewards = rewards or recipe_rewards(recipe)
    plan = plan or plan_device(recipe)
    train_rows, eval_rows, info = read_questions(recipe, retrieve)
    run_dir = run_directory(recipe, resume=resume)
    model, tokenizer, base_path = load_base(recipe, plan)
    # Rollouts are rendered with the tokenizer's template: make it the one inference uses.
    tokenizer.chat_template = chat_template(tokenizer)
    max_new = recipe.rl.max_completion_length
    before = None
    if eval_rows and not resume:
        log.info("answering %d held-out questions before training", len(eval_rows))
        before = evaluate_policy(model, tokenizer, eval_rows, rewards, max_new_tokens=max_new)
    functions, weights = rewards.trl_functions()
    info["rewards"] = rewards.weights
    trainer_class, config = _trainer_and_config(
        recipe, trainer_arguments(recipe, plan, run_dir, has_eval=False), weights
    )
    trainer = guarded(type(f"Sampling{trainer_class.__name__}", (_SamplingGuard, trainer_class), {}))(
        model=model,
        reward_funcs=functions,
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
        peft_config=lora_config(recipe, model),
    )
    record = train_and_record(
        trainer, recipe=recipe, plan=plan, run_dir=run_dir, base_path=base_path, data=info, resume=resume
    )
    if eval_rows and trainer.is_world_process_zero():
        log.info("answering %d held-out questions after training", len(eval_rows))
        after = evaluate_policy(trainer.model, tokenizer, eval_rows, rewards, max_new_tokens=max_new)
        record["metrics"]["heldout"] = {"before": before, "after": after}
        atomic_write_json(run_dir / RUN_FILE, record)
    return record
