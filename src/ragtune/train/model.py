"""Loads the base model for training (full precision or 4-bit for QLoRA) and builds its LoRA/DoRA adapter config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, LLMError
from ragtune.llm.local import resolve_model
from ragtune.train.device import DevicePlan
from ragtune.train.recipe import Recipe

log = logging.getLogger(__name__)


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise LLMError(f"tokenizer of {path} could not be loaded ({type(exc).__name__}: {exc})") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(recipe: Recipe, plan: DevicePlan) -> tuple[Any, Any, str]:
    """The model to train, its tokenizer and the resolved base path (QLoRA loads the base in 4-bit NF4)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(path)
    dtype = getattr(torch, plan.torch_dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if recipe.model.finetune == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": plan.device if plan.device == "cpu" else 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as exc:
        raise LLMError(
            f"base model {recipe.model.name} ({path}) could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    if recipe.model.finetune == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan.gradient_checkpointing)
    model.config.use_cache = False  # the KV cache only matters for generation and conflicts with checkpointing
    return model, tokenizer, path


def lora_config(recipe: Recipe, model: Any | None = None) -> Any:
    """The PEFT config for lora/dora/qlora (None for full fine-tuning); target modules are checked against the model."""
    if recipe.model.finetune == "full":
        return None
    from peft import LoraConfig

    targets = list(recipe.lora.target_modules)
    if model is not None:
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
            raise ConfigError(
                f"lora.target_modules {missing} are not modules of {recipe.model.name} — its linear layers are "
                f"{', '.join(linear)}"
            )
    return LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=targets,
        use_dora=recipe.model.finetune == "dora",
        task_type="CAUSAL_LM",
    )


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()
