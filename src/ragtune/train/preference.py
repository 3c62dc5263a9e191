"""Preference tuning through TRL: DPO and KTO (trl), ORPO (trl.experimental); LoRA/DoRA/QLoRA or full weights."""

from __future__ import annotations

from typing import Any

from ragtune.llm.local import chat_template
from ragtune.train.data import encode_chat, report_lengths
from ragtune.train.device import DevicePlan, plan_device
from ragtune.train.model import load_base, lora_config
from ragtune.train.recipe import Recipe, RecipeError
from ragtune.train.run import callbacks, guarded, run_directory, train_and_record, trainer_arguments
from ragtune.train.sft import read_split

PREFERENCE_METHODS = ("dpo", "kto", "orpo")


def train_preference(recipe: Recipe, *, resume: bool = False, plan: DevicePlan | None = None) -> dict[str, Any]:
    """Run DPO, KTO or ORPO (``recipe.method``); returns the run record (also written to run.json).

    DPO and ORPO learn from ``prompt/chosen/rejected`` pairs, KTO from ``prompt/completion/label`` rows.
    With an adapter, DPO and KTO use the base model (adapter disabled) as the reference, so no second copy
    of the model is loaded.
    """
    from datasets import Dataset

    if recipe.method not in PREFERENCE_METHODS:
        raise RecipeError(
            f"train_preference got a '{recipe.method}' recipe — use one of {', '.join(PREFERENCE_METHODS)}"
        )
    plan = plan or plan_device(recipe)
    kind = "kto" if recipe.method == "kto" else "preference"
    train_rows, eval_rows, info = read_split(recipe, kind)
    run_dir = run_directory(recipe, resume=resume)
    model, tokenizer, base_path = load_base(recipe, plan)
    # TRL renders conversational rows with the tokenizer's template: make it the one inference uses.
    tokenizer.chat_template = chat_template(tokenizer)
    info["lengths"] = _report_lengths(tokenizer, train_rows, recipe.data.max_seq_len)
    has_eval = bool(eval_rows)
    arguments = trainer_arguments(recipe, plan, run_dir, has_eval=has_eval)
    trainer_class, config = _trainer_and_config(recipe, arguments)
    trainer = guarded(trainer_class)(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if has_eval else None,
        processing_class=tokenizer,
        peft_config=lora_config(recipe, model),
        callbacks=callbacks(recipe, has_eval=has_eval),
    )
    return train_and_record(
        trainer, recipe=recipe, plan=plan, run_dir=run_dir, base_path=base_path, data=info, resume=resume
    )


def _report_lengths(tokenizer: Any, rows: list[dict[str, Any]], max_len: int) -> dict[str, float]:
    """Token lengths of prompt + longest reply per row, logged (with truncation warnings) before training."""
    lengths = []
    for row in rows:
        replies = [row[key] for key in ("chosen", "rejected", "completion") if key in row]
        lengths.append(max(len(encode_chat(tokenizer, [*row["prompt"], *reply])[0]) for reply in replies))
    return report_lengths(lengths, max_len)


def _trainer_and_config(recipe: Recipe, arguments: dict[str, Any]) -> tuple[type, Any]:
    preference = recipe.preference
    max_len = recipe.data.max_seq_len
    if recipe.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig(
            **arguments, beta=preference.beta, loss_type=[preference.loss_type], max_length=max_len
        )
    if recipe.method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig(
            **arguments,
            beta=preference.beta,
            desirable_weight=preference.desirable_weight,
            undesirable_weight=preference.undesirable_weight,
            max_length=max_len,
        )
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    # Its collator needs the raw columns, which the trainer would otherwise drop (and warn about).
    return ORPOTrainer, ORPOConfig(**arguments, beta=preference.beta, max_length=max_len, remove_unused_columns=False)
