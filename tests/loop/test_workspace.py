"""The loop folder: atomic files, a history that never repeats a decision, the promoted-settings layer between the
KB's ragtune.toml and RAGTUNE_* variables, and one loop command at a time."""

from __future__ import annotations

import pytest

from ragtune.errors import StoreError
from ragtune.loop.workspace import Workspace
from ragtune.settings import load_settings

pytestmark = pytest.mark.unit


def test_serving_settings_are_a_layer_above_the_kb_toml_and_below_the_environment(tmp_path, monkeypatch) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "ragtune.toml").write_text('rerank = "llm"\ncontext_hits = 4\n')
    ws = Workspace(kb)
    assert load_settings(kb).rerank == "llm"
    ws.set_serving({"rerank": "cross-encoder:/models/r1", "refusal_threshold": 0.51})
    settings = load_settings(kb)
    assert settings.rerank == "cross-encoder:/models/r1" and settings.refusal_threshold == 0.51
    assert settings.context_hits == 4  # what the loop does not promote stays the KB's
    monkeypatch.setenv("RAGTUNE_RERANK", "none")
    assert load_settings(kb).rerank == "none"
    assert load_settings(kb, rerank="llm").rerank == "llm"
    monkeypatch.delenv("RAGTUNE_RERANK")
    ws.set_serving({"rerank": None})
    assert load_settings(kb).rerank == "llm" and ws.serving() == {"refusal_threshold": 0.51}


def test_serving_values_round_trip_through_toml(tmp_path) -> None:
    ws = Workspace(tmp_path)
    odd = 'C:\\models\\"quoted"\\模型'
    ws.set_serving({"demonstrations": odd, "demonstrations_k": 3, "refusal_threshold": 0.4})
    assert ws.serving() == {"demonstrations": odd, "demonstrations_k": 3, "refusal_threshold": 0.4}
    assert not list(ws.serving_path.parent.glob(".*.tmp"))


def test_history_keeps_each_decision_once_and_skips_a_torn_line(tmp_path) -> None:
    ws = Workspace(tmp_path)
    ws.append_history({"key": "r001:embedder", "verdict": "rejected"})
    ws.append_history({"key": "r001:embedder", "verdict": "rejected"})  # a resumed run records again
    with ws.history_path.open("a") as f:
        f.write('{"key": "r002:embedder", "verd')  # a crash mid-line
    assert [h["key"] for h in ws.history()] == ["r001:embedder"]


def test_versions_and_runs_are_numbered(tmp_path) -> None:
    ws = Workspace(tmp_path)
    assert [ws.new_version("embedder")[0] for _ in range(3)] == ["v000", "v001", "v002"]
    ws.save_version("embedder", {"version": "v001", "serving": {"embedder": "x"}})
    assert [v["version"] for v in ws.versions("embedder")] == ["v001"]
    assert ws.new_run()[0] == "r001" and ws.new_run()[0] == "r002"


def test_one_loop_command_at_a_time(tmp_path) -> None:
    ws = Workspace(tmp_path)
    with ws.lock(), pytest.raises(StoreError, match="another 'ragtune loop' command"), Workspace(tmp_path).lock():
        pass
    with ws.lock():  # released
        pass
