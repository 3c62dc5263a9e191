"""`ragtune loop ... --json` writes its result alone on stdout, whatever the work prints on the way (transformers'
trainer prints its log lines: a SciFact `loop run --json` once wrote them before the JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ragtune.loop
from ragtune.cli import app

pytestmark = pytest.mark.integration


def test_what_the_work_prints_goes_to_stderr(handbook_kb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def noisy_run(base: Any, *, stages: Any = None, on_progress: Any = None) -> dict[str, Any]:
        print({"loss": 0.69, "epoch": 1.0})  # what transformers' PrinterCallback does
        return {"run": "r001", "status": "done", "stages": [], "phases": {}}

    monkeypatch.setattr(ragtune.loop, "run_loop", noisy_run)
    result = CliRunner().invoke(app, ["loop", "run", "--kb", str(handbook_kb), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"run": "r001", "status": "done", "stages": [], "phases": {}}
    assert "'loss': 0.69" in result.stderr
