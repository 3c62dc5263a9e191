"""DPO, KTO and ORPO run through TRL on the tiny model and save an adapter and run.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import tiny_overrides

from ragtune.train.data import DataError
from ragtune.train.preference import train_preference
from ragtune.train.recipe import load_recipe


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "kto", "orpo"])
def test_runs_and_saves(method: str, tiny_model_dir: str, preference_file: Path, kto_file: Path,
                        tmp_path: Path) -> None:
    data = kto_file if method == "kto" else preference_file
    run_dir = tmp_path / "run"
    recipe = load_recipe(None, tiny_overrides(tiny_model_dir, data, run_dir, **{"train.epochs": 1}), method=method)
    record = train_preference(recipe)
    assert record["status"] == "finished" and record["method"] == method
    assert record["metrics"]["global_step"] >= 1
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert json.loads((run_dir / "run.json").read_text())["method"] == method
    losses = [h["loss"] for h in record["log_history"] if "loss" in h]
    assert losses and all(loss == loss for loss in losses)


@pytest.mark.integration
def test_wrong_data_kind_is_a_clear_error(tiny_model_dir: str, sft_file: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, tiny_overrides(tiny_model_dir, sft_file, tmp_path / "run"), method="dpo")
    with pytest.raises(DataError, match="alpaca data cannot train DPO/ORPO"):
        train_preference(recipe)
