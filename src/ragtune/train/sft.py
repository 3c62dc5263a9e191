"""Supervised fine-tuning (LoRA, DoRA, QLoRA or full) with TRL's SFTTrainer, on assistant tokens only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ragtune.train.data import data_hash, load_examples, split_eval, tokenize_sft
from ragtune.train.device import DevicePlan, plan_device
from ragtune.train.model import load_base, lora_config
from ragtune.train.recipe import Recipe, RecipeError
from ragtune.train.run import callbacks, guarded, run_directory, train_and_record, trainer_arguments

log = logging.getLogger(__name__)


def read_split(recipe: Recipe, kind: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Training and held-out examples of ``kind`` ('sft', 'preference', 'kto') and what run.json records of them."""
    data = recipe.data
    if not data.path:
        raise RecipeError("data.path is not set — give the training file: --set data.path=train.jsonl")
    options = {"kind": kind, "fmt": data.format, "dataset": data.dataset, "system_prompt": data.system_prompt}
    examples = load_examples(data.path, **options)
    if data.max_examples:
        examples = examples[: data.max_examples]
    if data.eval_path:
        train, held = examples, load_examples(data.eval_path, **options)
    else:
        train, held = split_eval(examples, data.eval_split, recipe.train.seed)
    info = {
        "path": str(Path(data.path)),
        "sha256": data_hash(data.path),
        "eval_path": data.eval_path or None,
        "train_examples": len(train),
        "eval_examples": len(held),
    }
    log.info("%d training and %d held-out examples from %s", len(train), len(held), data.path)
    return train, held, info


def train_sft(recipe: Recipe, *, resume: bool = False, plan: DevicePlan | None = None) -> dict[str, Any]:
    """Run supervised fine-tuning as ``recipe`` says; returns the run record (also written to run.json)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if recipe.method != "sft":
        raise RecipeError(f"train_sft got a '{recipe.method}' recipe — run it with 'ragtune train {recipe.method}'")
    plan = plan or plan_device(recipe)
    train_rows, eval_rows, info = read_split(recipe, "sft")
    run_dir = run_directory(recipe, resume=resume)
    model, tokenizer, base_path = load_base(recipe, plan)
    max_len = recipe.data.max_seq_len
    train_tokens, info["lengths"] = tokenize_sft(tokenizer, train_rows, max_len)
    train_set = Dataset.from_list(train_tokens)
    eval_set = Dataset.from_list(tokenize_sft(tokenizer, eval_rows, max_len)[0]) if eval_rows else None
    has_eval = eval_set is not None
    config = SFTConfig(
        **trainer_arguments(recipe, plan, run_dir, has_eval=has_eval),
        max_length=max_len,
        packing=recipe.data.packing,
        # Padding-free "bfd" packing needs flash attention; on CPU sequences are concatenated and cut instead.
        packing_strategy="bfd" if plan.device == "cuda" else "wrapped",
        dataset_num_proc=None,
    )
    trainer = guarded(SFTTrainer)(
        model=model,
        args=config,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=lora_config(recipe, model),
        callbacks=callbacks(recipe, has_eval=has_eval),
    )
    return train_and_record(
        trainer, recipe=recipe, plan=plan, run_dir=run_dir, base_path=base_path, data=info, resume=resume
    )
