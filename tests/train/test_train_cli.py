"""The train and model commands as a user drives them, on the bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "sft-lora.toml"
DATA = ROOT / "recipes" / "data" / "handbook-sft.jsonl"


@pytest.mark.e2e
@pytest.mark.slow
def test_train_merge_eval(tmp_path: Path, bundled_dir: str) -> None:
    runner = CliRunner()
    run_dir = tmp_path / "runs" / "sft-001"
    result = runner.invoke(app, [
        "train", "sft", str(RECIPE), "--set", f"data.path={DATA}", "--set", f"output.dir={run_dir}",
        "--set", "train.max_steps=1", "--set", "train.batch_size=1", "--set", "train.grad_accum=1",
        "--set", "data.max_examples=3", "--set", "data.eval_split=0.34", "--set", "output.report_to=[]", "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 1 and summary["device"] == "cpu" and summary["precision"] == "fp32"
    assert (run_dir / "adapter_config.json").is_file() and (run_dir / "run.json").is_file()

    merged = tmp_path / "models" / "merged"
    result = runner.invoke(app, ["model", "merge", str(run_dir), "--out", str(merged), "--json"])
    assert result.exit_code == 0, result.output
    assert (merged / "config.json").is_file() and (merged / "model.safetensors").is_file()

    report_file = tmp_path / "eval.json"
    result = runner.invoke(app, [
        "model", "eval", str(run_dir), "--data", str(DATA), "--limit", "1", "--max-new-tokens", "8",
        "--out", str(report_file),
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text())
    assert report["base_model"] == "SmolLM2-135M-Instruct" and report["examples"] == 1
    assert report["tuned"]["perplexity"] > 1 and 0 <= report["win_rate_vs_base"]["rate"] <= 1


@pytest.mark.e2e
def test_recipe_errors_exit_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "sft", str(RECIPE), "--set", "lora.rank=8", "--json"])
    assert result.exit_code == 1
    assert "unknown key 'lora.rank' — did you mean 'lora.r'" in json.loads(result.stdout)["error"]
    result = CliRunner().invoke(app, ["train", "sft", str(ROOT / "recipes" / "dpo.toml")])
    assert result.exit_code == 1 and "ragtune train dpo" in result.output
    result = CliRunner().invoke(app, ["model", "merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "no such run directory" in result.output


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_same_recipe_runs_two_processes_with_torchrun(tmp_path: Path, tiny_model_dir: str) -> None:
    """Data parallel on CPU: torchrun starts two processes (gloo); the trainer sees a world size of 2."""
    run_dir = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "-m", "ragtune",
        "train", "sft", str(RECIPE), "--set", f"model.name={tiny_model_dir}", "--set", f"data.path={DATA}",
        "--set", f"output.dir={run_dir}", "--set", "train.max_steps=2", "--set", "train.batch_size=1",
        "--set", "train.grad_accum=1", "--set", "data.max_examples=8", "--set", "data.max_seq_len=256",
        "--set", "data.eval_split=0", "--set", "output.report_to=[]", "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["metrics"]["world_size"] == 2 and record["metrics"]["global_step"] == 2
