"""Data and overrides shared by the training tests (a module of its own: several test folders have a conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune import jsonl

QA = [
    ("What is the refund window?", "Refunds are accepted within 30 days [1]."),
    ("Who approves travel?", "Your manager approves travel before booking [1]."),
    ("How long is the password?", "Passwords need at least 12 characters [1]."),
    ("When is onboarding?", "Onboarding runs on the first Monday [1]."),
    ("Where are receipts sent?", "Receipts go to finance within a week [1]."),
    ("Is VPN required?", "The VPN is required on public networks [1]."),
    ("How many vacation days?", "Staff get 20 vacation days a year [1]."),
    ("Who issues laptops?", "IT issues laptops on the first day [1]."),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    jsonl.write_jsonl(path, rows)
    return path



def tiny_overrides(model_dir: str, data: Path, run_dir: Path, **extra: Any) -> list[str]:
    """--set overrides that make a recipe train the tiny model for a few steps, quietly."""
    settings = {
        "model.name": model_dir,
        "data.path": str(data),
        "data.max_seq_len": 96,
        "output.dir": str(run_dir),
        "output.report_to": [],
        "train.batch_size": 4,
        "train.grad_accum": 1,
        "train.logging_steps": 1,
        "train.learning_rate": 5e-3,
        **extra,
    }
    return [f"{key}={json.dumps(value)}" for key, value in settings.items()]
