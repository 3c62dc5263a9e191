"""Reward models: a scalar head trained on preference pairs with TRL's RewardTrainer (Bradley–Terry loss),
loaded back to score answers, and scored on held-out pairs by pairwise accuracy.

Pairs come from DPO-style files (``prompt/chosen/rejected``), LLaMA-Factory ranking datasets, or ragtune's
feedback export, where 👍/👎 become pairs directly: a correction is preferred to the answer it corrects, and
for one question asked over the same sources every 👍 answer is preferred to every 👎 answer. With LoRA the
adapter and the score head are trained (the head is saved with the adapter).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, LLMError
from ragtune.llm.local import chat_template, resolve_model
from ragtune.train.data import (
    DataError,
    data_hash,
    detect_format,
    feedback_prompt,
    load_examples,
    read_rows,
    report_lengths,
    split_eval,
)
from ragtune.train.device import DevicePlan, plan_device
from ragtune.train.merge import base_of
from ragtune.train.model import is_adapter_dir, load_tokenizer, lora_config
from ragtune.train.recipe import Recipe, RecipeError
from ragtune.train.rewards import Sample
from ragtune.train.run import (
    RUN_FILE,
    callbacks,
    guarded,
    read_run,
    run_directory,
    train_and_record,
    trainer_arguments,
)

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


# ---------------------------------------------------------------------------------------------- data


def rated_pairs(rows: Sequence[dict[str, Any]], system_prompt: str = "") -> list[dict[str, Any]]:
    """Preference pairs from feedback rows (``question, answer, rating, corrected_answer?, contexts?``).

    A correction is preferred to the 👎 answer it corrects; answers to one question over the same sources
    are paired 👍 over 👎 (a correction counts as 👍). Duplicate pairs are kept once.
    """
    groups: dict[tuple[str, tuple[str, ...]], dict[str, list[str]]] = {}
    pairs: dict[tuple[Any, ...], dict[str, Any]] = {}

    def add(key: tuple[str, tuple[str, ...]], good: str, bad: str) -> None:
        if good.strip() and bad.strip() and good.strip() != bad.strip():
            pairs.setdefault((key, good, bad), {"key": key, "chosen": good, "rejected": bad})

    for number, row in enumerate(rows, 1):
        rating = row.get("rating")
        if rating not in ("up", "down") or not isinstance(row.get("question"), str):
            raise DataError(f"feedback row {number}: needs a question and a rating of 'up' or 'down', got "
                            f"{ {k: row.get(k) for k in ('question', 'rating')} }")
        key = (row["question"], tuple(row.get("contexts") or ()))
        group = groups.setdefault(key, {"up": [], "down": []})
        answer, corrected = row.get("answer") or "", row.get("corrected_answer") or ""
        if corrected:
            group["up"].append(corrected)
            if rating == "down":
                add(key, corrected, answer)
        if answer:
            group[rating].append(answer)
    for key, group in groups.items():
        for good in group["up"]:
            for bad in group["down"]:
                add(key, good, bad)
    return [
        {"prompt": feedback_prompt(p["key"][0], list(p["key"][1]), system_prompt),
         "chosen": [{"role": "assistant", "content": p["chosen"]}],
         "rejected": [{"role": "assistant", "content": p["rejected"]}]}
        for p in pairs.values()
    ]


def load_pairs(path: str | Path, *, fmt: str = "auto", dataset: str = "", system_prompt: str = ""
               ) -> list[dict[str, Any]]:
    """Conversational preference pairs from a preference, LLaMA-Factory ranking or feedback file."""
    file = Path(path)
    if fmt == "feedback" or (fmt == "auto" and file.name != "dataset_info.json" and file.suffix != ".txt"
                             and detect_format(read_rows(file)[0]) == "feedback"):
        found = rated_pairs(read_rows(file), system_prompt)
        if not found:
            raise DataError(f"{file}: no question has both a 👍 and a 👎 answer, nor a corrected 👎 answer, so there "
                            "is no pair to learn from — collect more feedback or give prompt/chosen/rejected pairs")
        return found
    return load_examples(file, kind="preference", fmt=fmt, dataset=dataset, system_prompt=system_prompt)


def _read_split(recipe: Recipe) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    data = recipe.data
    if not data.path:
        raise RecipeError("data.path is not set — give the pairs: --set data.path=pairs.jsonl")
    options = {"fmt": data.format, "dataset": data.dataset, "system_prompt": data.system_prompt}
    pairs = load_pairs(data.path, **options)
    if data.max_examples:
        pairs = pairs[: data.max_examples]
    if data.eval_path:
        train, held = pairs, load_pairs(data.eval_path, **options)
    else:
        train, held = split_eval(pairs, data.eval_split, recipe.train.seed)
    info = {"path": str(Path(data.path)), "sha256": data_hash(data.path), "eval_path": data.eval_path or None,
            "train_examples": len(train), "eval_examples": len(held)}
    log.info("%d training and %d held-out pairs from %s", len(train), len(held), data.path)
    return train, held, info


# ---------------------------------------------------------------------------------------------- training


def train_reward(recipe: Recipe, *, resume: bool = False, plan: DevicePlan | None = None) -> dict[str, Any]:
    """Train a reward model as ``recipe`` says; returns the run record (also written to run.json).

    The base model gets a one-output score head (``AutoModelForSequenceClassification``); each pair is
    rendered with the inference chat template and the loss is ``-log σ(r_chosen - r_rejected)``. Pairs longer
    than data.max_seq_len are dropped by TRL, so they are counted and warned about first.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    if recipe.method != "reward":
        raise RecipeError(f"train_reward got a '{recipe.method}' recipe — run it with 'ragtune train {recipe.method}'")
    if recipe.model.finetune == "qlora":
        raise RecipeError("model.finetune = 'qlora' is not supported for reward models — use 'lora' or 'full'")
    plan = plan or plan_device(recipe)
    train_rows, eval_rows, info = _read_split(recipe)
    run_dir = run_directory(recipe, resume=resume)
    base_path = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(base_path)
    tokenizer.chat_template = chat_template(tokenizer)
    info["lengths"] = _report_pair_lengths(tokenizer, train_rows, recipe.data.max_seq_len)
    set_seed(recipe.train.seed)  # the score head is initialised randomly
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base_path, num_labels=1, dtype=getattr(torch, plan.torch_dtype)
        )
    except Exception as exc:
        raise LLMError(f"base model {recipe.model.name} ({base_path}) could not be loaded with a score head: "
                       f"{type(exc).__name__}: {exc}") from exc
    model.config.pad_token_id = tokenizer.pad_token_id
    peft = lora_config(recipe, model)
    if peft is not None:
        peft.task_type = "SEQ_CLS"  # PEFT then trains and saves the score head beside the adapter
    has_eval = bool(eval_rows)
    config = RewardConfig(
        **trainer_arguments(recipe, plan, run_dir, has_eval=has_eval),
        max_length=recipe.data.max_seq_len,
        center_rewards_coefficient=recipe.reward.center_coefficient or None,
        dataset_num_proc=None,
    )
    trainer = guarded(RewardTrainer)(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(_pair_columns(train_rows)),
        eval_dataset=Dataset.from_list(_pair_columns(eval_rows)) if has_eval else None,
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=callbacks(recipe, has_eval=has_eval),
    )
    return train_and_record(
        trainer, recipe=recipe, plan=plan, run_dir=run_dir, base_path=base_path, data=info, resume=resume
    )


def _pair_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def _report_pair_lengths(tokenizer: Any, rows: list[dict[str, Any]], max_len: int) -> dict[str, float]:
    lengths = [max(len(_ids(tokenizer, [*row["prompt"], *row[side]])) for side in ("chosen", "rejected"))
               for row in rows]
    stats = report_lengths(lengths, max_len)
    if stats["truncated"]:
        log.warning("reward training drops pairs longer than data.max_seq_len: %d of %d will not be learned",
                    stats["truncated"], len(rows))
    return stats


def _ids(tokenizer: Any, messages: Messages) -> list[int]:
    """Token ids of a conversation exactly as TRL's RewardTrainer renders it (the tokenizer's chat template)."""
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


# ---------------------------------------------------------------------------------------------- scoring


class RewardModel:
    """A trained reward model, loaded for scoring: higher is better, differences are log-odds of preference."""

    def __init__(self, run_dir: str | Path, *, base: str | None = None, batch_size: int = 8,
                 max_length: int = 2048, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        run_dir = Path(run_dir)
        if (run_dir / RUN_FILE).is_file():
            method = read_run(run_dir).get("method")
            if method != "reward":
                raise ConfigError(f"{run_dir} is a '{method}' run, not a reward model — train one with 'ragtune "
                                  "train reward recipes/reward.toml'")
        elif not run_dir.is_dir():
            raise ConfigError(f"{run_dir}: no such reward model — give the run directory of 'ragtune train reward' "
                              "(ask --best-of also takes --reward checks)")
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be greater than 0, got {batch_size}")
        try:
            if is_adapter_dir(run_dir):
                from peft import PeftModel

                base_path = resolve_model(base_of(run_dir, base))
                model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1,
                                                                           dtype=torch.float32)
                model = PeftModel.from_pretrained(model, str(run_dir)).merge_and_unload()
            else:
                base_path = str(run_dir)
                model = AutoModelForSequenceClassification.from_pretrained(run_dir, dtype=torch.float32)
        except Exception as exc:
            raise LLMError(f"reward model {run_dir} could not be loaded: {type(exc).__name__}: {exc}") from exc
        tokenizer_dir = run_dir if (run_dir / "tokenizer_config.json").is_file() else Path(base_path)
        self.tokenizer = load_tokenizer(str(tokenizer_dir))
        self.tokenizer.chat_template = chat_template(self.tokenizer)
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.path = run_dir

    def score_conversations(self, conversations: Sequence[Messages]) -> list[float]:
        """One score per conversation (prompt messages followed by the assistant's answer)."""
        import torch

        scores: list[float] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(conversations), self.batch_size):
            batch = [_ids(self.tokenizer, c)[-self.max_length:] for c in conversations[start:start + self.batch_size]]
            width = max(len(ids) for ids in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, sequence in enumerate(batch):  # right padding, as TRL's collator pads in training
                ids[row, : len(sequence)] = torch.tensor(sequence)
                mask[row, : len(sequence)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            scores.extend(float(x) for x in logits[:, 0].float().cpu())
        return scores

    def score(self, samples: Sequence[Sample]) -> list[float]:
        """Scores of answers to knowledge-base questions, each rendered as the RAG prompt it answers."""
        return self.score_conversations([
            [*feedback_prompt(s.question, list(s.contexts)), {"role": "assistant", "content": s.answer}]
            for s in samples
        ])


def _reply(messages: Messages) -> str:
    return "".join(m["content"] for m in messages if m["role"] == "assistant")


def _length_accuracy(pairs: Sequence[dict[str, Any]], longer_wins: bool) -> float:
    wins = []
    for pair in pairs:
        chosen, rejected = len(_reply(pair["chosen"])), len(_reply(pair["rejected"]))
        wins.append(0.5 if chosen == rejected else float((chosen > rejected) == longer_wins))
    return statistics.fmean(wins) if wins else 0.0


def score_pairs(run_dir: str | Path, data: str | Path, *, base: str | None = None, limit: int = 0,
                batch_size: int = 8) -> dict[str, Any]:
    """Pairwise accuracy of a reward model on held-out pairs (a tie counts half), its mean margin, the accuracy
    by the rows' ``kind`` and ``language`` where they carry them, and a length-only baseline: the longer (or
    shorter) reply wins, in the direction that is right more often on the run's own training pairs."""
    rows = read_rows(data) if Path(data).suffix in (".jsonl", ".json") and Path(data).name != "dataset_info.json" \
        else []
    pairs = load_pairs(data)
    # Kinds and languages line up with the pairs only when the file holds one pair a row.
    tags = rows if len(rows) == len(pairs) else [{} for _ in pairs]
    if limit:
        pairs, tags = pairs[:limit], tags[:limit]
    model = RewardModel(run_dir, base=base, batch_size=batch_size)
    chosen = model.score_conversations([[*p["prompt"], *p["chosen"]] for p in pairs])
    rejected = model.score_conversations([[*p["prompt"], *p["rejected"]] for p in pairs])
    wins = [0.5 if c == r else float(c > r) for c, r in zip(chosen, rejected, strict=True)]
    longer_wins = _training_length_direction(Path(run_dir))
    report: dict[str, Any] = {
        "model": str(run_dir),
        "data": str(data),
        "pairs": len(pairs),
        "accuracy": round(statistics.fmean(wins), 4),
        "mean_margin": round(statistics.fmean(c - r for c, r in zip(chosen, rejected, strict=True)), 4),
        "length_baseline": {
            "rule": "longer reply wins" if longer_wins else "shorter reply wins",
            "accuracy": round(_length_accuracy(pairs, longer_wins), 4),
            "longer_wins_accuracy": round(_length_accuracy(pairs, True), 4),
        },
    }
    for tag in ("kind", "language"):
        values = sorted({str(t[tag]) for t in tags if t.get(tag) is not None})
        if values:
            report[f"by_{tag}"] = {
                value: {
                    "pairs": sum(1 for t in tags if str(t.get(tag)) == value),
                    "accuracy": round(statistics.fmean(w for w, t in zip(wins, tags, strict=True)
                                                       if str(t.get(tag)) == value), 4),
                    "length_baseline": round(_length_accuracy(
                        [p for p, t in zip(pairs, tags, strict=True) if str(t.get(tag)) == value], longer_wins), 4),
                }
                for value in values
            }
    return report


def _training_length_direction(run_dir: Path) -> bool:
    """Whether 'longer wins' beats 'shorter wins' on the run's training pairs (True when they are unknown)."""
    try:
        recipe = read_run(run_dir).get("recipe", {})
        path = recipe.get("data", {}).get("path")
        if not path or not Path(path).is_file():
            return True
        train = load_pairs(path, fmt=recipe["data"].get("format", "auto"))
    except (ConfigError, KeyError, OSError) as exc:
        log.info("length baseline: the training pairs of %s could not be read (%s); using 'longer wins'", run_dir, exc)
        return True
    return _length_accuracy(train, True) >= 0.5
