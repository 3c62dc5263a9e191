"""Training fixtures: a tiny Llama built from a config with the bundled SmolLM2 tokenizer, and small data files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from train_helpers import QA, tiny_overrides, write_jsonl


@pytest.fixture(scope="session")
def bundled_dir() -> str:
    """The bundled SmolLM2 as an HF directory (converted once into the user's model cache)."""
    from ragtune.llm.bundled import BUNDLED_SMOLLM2
    from ragtune.llm.local import resolve_model

    return resolve_model(BUNDLED_SMOLLM2)


@pytest.fixture(scope="session")
def tokenizer(bundled_dir: str) -> Any:
    from ragtune.train.model import load_tokenizer

    return load_tokenizer(bundled_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, bundled_dir: str) -> str:
    """Two layers, hidden size 64, the SmolLM2 tokenizer and chat template: trains in well under a second a step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(bundled_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    target = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


@pytest.fixture()
def sft_file(tmp_path: Path) -> Path:
    rows = [{"instruction": q, "output": a} for q, a in QA]
    return write_jsonl(tmp_path / "sft.jsonl", rows)


@pytest.fixture()
def preference_file(tmp_path: Path) -> Path:
    rows = [{"prompt": q, "chosen": a, "rejected": "I am not sure."} for q, a in QA]
    return write_jsonl(tmp_path / "pref.jsonl", rows)


@pytest.fixture()
def kto_file(tmp_path: Path) -> Path:
    rows = []
    for q, a in QA:
        rows.append({"prompt": q, "completion": a, "label": True})
        rows.append({"prompt": q, "completion": "No idea.", "label": False})
    return write_jsonl(tmp_path / "kto.jsonl", rows)


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> Path:
    """A LoRA adapter trained for a few steps on the tiny model (shared by the merge, serve and eval tests)."""
    from ragtune.train.recipe import load_recipe
    from ragtune.train.sft import train_sft

    root = tmp_path_factory.mktemp("lora-run")
    data = write_jsonl(root / "sft.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    recipe = load_recipe(
        None, tiny_overrides(tiny_model_dir, data, root / "run", **{"train.epochs": 3, "data.eval_split": 0.0}),
        method="sft",
    )
    train_sft(recipe)
    return root / "run"
