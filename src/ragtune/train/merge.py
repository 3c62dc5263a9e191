"""Merges a trained LoRA/DoRA (or QLoRA) adapter into a freshly loaded, unquantised copy of its base model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, LLMError
from ragtune.files import atomic_write_json
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.llm.local import resolve_model
from ragtune.train.model import is_adapter_dir, load_tokenizer
from ragtune.train.run import RUN_FILE, read_run

log = logging.getLogger(__name__)

MERGE_FILE = "ragtune_merge.json"


def base_of(run_dir: str | Path, base: str | None = None) -> str:
    """The base model a run was trained from: ``base`` if given, else run.json's, else the adapter's own record."""
    if base:
        return base
    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).is_file():
        return str(read_run(run_dir)["base_model"])
    config = run_dir / "adapter_config.json"
    if config.is_file():
        recorded = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if recorded:
            return str(recorded)
    return BUNDLED_SMOLLM2


def load_trained(run_dir: str | Path, base: str | None = None, *, dtype: str = "float32") -> tuple[Any, Any]:
    """The trained model with its adapter merged (in memory) and its tokenizer; a full fine-tune loads as is."""
    import torch
    from transformers import AutoModelForCausalLM

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory — give the directory 'ragtune train' wrote")
    torch_dtype = getattr(torch, dtype)
    if not is_adapter_dir(run_dir):
        if not (run_dir / "config.json").is_file():
            raise ConfigError(f"{run_dir}: holds neither an adapter (adapter_config.json) nor a model (config.json)")
        return AutoModelForCausalLM.from_pretrained(run_dir, dtype=torch_dtype), load_tokenizer(str(run_dir))
    from peft import PeftModel

    base_name = base_of(run_dir, base)
    base_path = resolve_model(base_name)
    try:
        # Always a fresh, unquantised load: merging into 4-bit weights would round the update away.
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
        merged = PeftModel.from_pretrained(model, str(run_dir)).merge_and_unload()
    except Exception as exc:
        raise LLMError(f"adapter {run_dir} could not be merged into {base_name}: {type(exc).__name__}: {exc}") from exc
    tokenizer_dir = run_dir if (run_dir / "tokenizer_config.json").is_file() else Path(base_path)
    return merged, load_tokenizer(str(tokenizer_dir))


def merge_adapter(run_dir: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "float32") -> Path:
    """Write the merged model to ``out``: an HF directory that ``--llm-model`` (local backend) loads directly."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty — choose a new --out directory")
    model, tokenizer = load_trained(run_dir, base, dtype=dtype)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"run": str(Path(run_dir).resolve()), "base_model": base_of(run_dir, base), "dtype": dtype}
    atomic_write_json(out / MERGE_FILE, record)
    log.info("merged %s into %s", run_dir, out)
    return out
