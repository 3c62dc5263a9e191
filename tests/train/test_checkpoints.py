"""Resuming skips a checkpoint a kill left half-written: the trainer resumes from the last checkpoint folder, and
one without weights failed the resume ("no file named model.safetensors", seen when the loop's SIGKILL test
landed during a save on a loaded machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.train.run import complete_checkpoints, resumable_checkpoints

pytestmark = pytest.mark.unit


def _checkpoint(root: Path, step: int, *files: str) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"x")
    return path


def test_half_written_checkpoints_are_dropped(tmp_path: Path) -> None:
    full = _checkpoint(tmp_path, 2, "model.safetensors", "trainer_state.json", "optimizer.pt")
    adapter = _checkpoint(tmp_path, 10, "adapter_model.safetensors", "trainer_state.json")
    no_weights = _checkpoint(tmp_path, 12, "trainer_state.json")  # killed while the weights were written
    no_state = _checkpoint(tmp_path, 14, "model.safetensors")  # killed before the trainer state
    assert complete_checkpoints(tmp_path) == [full, adapter]  # in step order: 2 before 10
    assert not no_weights.exists() and not no_state.exists()


def test_a_resume_starts_from_the_last_complete_checkpoint(tmp_path: Path) -> None:
    identity = {"recipe": 1}
    (tmp_path / "recipe.json").write_text(json.dumps(identity))
    done = _checkpoint(tmp_path, 1, "model.safetensors", "trainer_state.json")
    _checkpoint(tmp_path, 2, "optimizer.pt")
    assert resumable_checkpoints(tmp_path, identity, resume=True)[-1] == done
    assert resumable_checkpoints(tmp_path, identity, resume=False) == []
