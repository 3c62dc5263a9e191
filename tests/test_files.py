"""Atomic file replacement: the new content whole, or the old one untouched when the write fails."""

from __future__ import annotations

import json
import os

import pytest

from ragtune.files import atomic_write, atomic_write_json

pytestmark = pytest.mark.unit


def test_the_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomic_write_json(path, {"phase": "questions", "名字": "李华", "when": tmp_path})
    atomic_write_json(path, {"phase": "trained"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"phase": "trained"}
    atomic_write_json(path, {"名字": "李华", "path": tmp_path})
    assert json.loads(path.read_text(encoding="utf-8")) == {"名字": "李华", "path": str(tmp_path)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    atomic_write(path, "old\n")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "new\n")
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
