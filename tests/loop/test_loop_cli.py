"""`ragtune loop init|run|status|history|rollback|prune` as a user types them (the KB answers through a fake
OpenAI-compatible server, so the demonstrations stage's gate runs in seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_recipe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = """
[evalset]
feedback_share = 0.4
unanswerable = 0.2
[embedder]
enabled = false
[demonstrations]
enabled = true
min_examples = 3
[demonstrations.gate]
target = "answer_correctness"
guards = { refusal_accuracy = 0.01, faithfulness = 0.01, latency_p95 = 3.0 }
[measure]
resamples = 500
latency_questions = 2
"""


def ragtune(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ragtune", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def test_the_loop_commands(handbook_kb: Path, fake_llm_url: str) -> None:
    (handbook_kb / "ragtune.toml").write_text(f'llm = "openai"\nllm_model = "fake"\nllm_base_url = "{fake_llm_url}"\n')
    kb = str(handbook_kb)
    early = ragtune("loop", "run", "--kb", kb)
    assert early.returncode == 1 and "ragtune loop init --kb" in early.stderr
    recipe = write_recipe(handbook_kb.parent / "loop.toml", RECIPE)
    init = ragtune("loop", "init", "--kb", kb, "--recipe", str(recipe))
    assert init.returncode == 0, init.stderr
    assert "eval set frozen:" in init.stdout and "unanswerable probes" in init.stdout
    assert ragtune("loop", "init", "--kb", kb, "--recipe", str(recipe)).returncode == 1

    run = ragtune("loop", "run", "--kb", kb)
    assert run.returncode == 0, run.stderr
    assert "demonstrations v001 vs v000:" in run.stdout and "answer_correctness" in run.stdout
    assert "personal data redacted: email 1" in run.stdout or "eval questions dropped" in run.stdout

    status = json.loads(ragtune("loop", "status", "--kb", kb, "--json").stdout)
    outcome = status["stages"]["demonstrations"]["last"]["verdict"]
    assert outcome in ("promoted", "rejected") and status["stages"]["demonstrations"]["versions"] == 2
    table = ragtune("loop", "status", "--kb", kb).stdout
    assert "demonstrations" in table and "v001" in table

    history = json.loads(ragtune("loop", "history", "--kb", kb, "--json").stdout)
    decision = [h for h in history if h["kind"] == "decision"][0]
    assert decision["data"]["sha256"]["demonstrations"] and decision["seed"] == 42
    text = ragtune("loop", "history", "--kb", kb, "--stage", "demonstrations").stdout
    assert f"demonstrations v001 vs v000: {outcome}" in text and "rows from feedback" in text

    target = "v001" if outcome == "rejected" else "v000"
    rolled = ragtune("loop", "rollback", "--kb", kb, "--stage", "demonstrations", "--to", target)
    assert rolled.returncode == 0 and f"demonstrations: {'v000' if target == 'v001' else 'v001'} → {target}" in \
        rolled.stdout
    missing = ragtune("loop", "rollback", "--kb", kb, "--stage", "demonstrations", "--to", "v009")
    assert missing.returncode == 1 and "no version 'v009'" in missing.stderr
    pruned = json.loads(ragtune("loop", "prune", "--kb", kb, "--keep", "0", "--json").stdout)
    assert pruned == {}  # v000 and the champion (v001) are all there is: nothing to prune
