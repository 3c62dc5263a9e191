"""The audit log: append-only, hash-chained, retention, redaction, and whole entries after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.guard.audit import AuditLog, parse_time

pytestmark = pytest.mark.integration  # real SQLite files

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture()
def log(tmp_path):
    with AuditLog(tmp_path / "ragtune.db") as audit:
        yield audit


def test_entries_record_who_saw_what(log):
    log.record("key:ab12", "search", question="pay bands", groups=["hr"], retrieved=["d1", "d2", "d1"],
               shown=["d1"], detail={"mode": "hybrid"})
    log.record("cli:alice", "answer", question="leave?", retrieved=["d3"], shown=["d3"], refused=True)
    first, second = log.entries()
    assert (first.actor, first.action, first.groups, first.retrieved, first.shown, first.refused) == (
        "key:ab12", "search", ["hr"], ["d1", "d2"], ["d1"], None)
    assert second.refused is True and second.groups is None and second.seq > first.seq
    assert [e.actor for e in log.entries(action="answer")] == ["cli:alice"]
    assert [e.actor for e in log.entries(limit=1)] == ["cli:alice"]
    assert log.entries(since=time.time() + 10) == []
    assert first.to_dict()["time"].endswith("+00:00")
    with pytest.raises(ConfigError, match="unknown audit action"):
        log.record("x", "delete")


def test_the_log_is_append_only(log, tmp_path):
    log.record("a", "search", question="q")
    conn = sqlite3.connect(tmp_path / "ragtune.db")
    for statement in ("UPDATE audit SET question = 'changed'", "DELETE FROM audit",
                      "UPDATE audit_meta SET value = '-1' WHERE key = 'purged_before'", "DELETE FROM audit_meta"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only|only moves forward"):
            conn.execute(statement)
    conn.close()
    assert log.verify() == {"ok": True, "entries": 1, "broken_at": None, "problem": None}


def test_tampering_behind_the_triggers_breaks_the_chain(log, tmp_path):
    for i in range(3):
        log.record("a", "search", question=f"q{i}")
    conn = sqlite3.connect(tmp_path / "ragtune.db")
    conn.execute("DROP TRIGGER audit_append_only")
    conn.execute("UPDATE audit SET question = 'forged' WHERE seq = 2")
    conn.commit()
    report = log.verify()
    assert not report["ok"] and report["broken_at"] == 2 and "changed" in report["problem"]
    conn.execute("DROP TRIGGER audit_retention_only")
    conn.execute("DELETE FROM audit WHERE seq = 2")
    conn.commit()
    conn.close()
    assert log.verify()["broken_at"] == 3


def test_retention_purges_old_entries_and_keeps_the_chain(tmp_path):
    db = tmp_path / "ragtune.db"
    with AuditLog(db) as audit:
        for i in range(4):
            audit.record("a", "search", question=f"q{i}")
    old = time.time() + 2 * 86400  # pretend two days passed
    with AuditLog(db, retention_days=1) as audit:
        assert audit.purge(now=old) == 4  # opening purged nothing: the entries are new
        assert audit.purge(now=old) == 0
        audit.record("b", "answer", question="after")
        assert [e.actor for e in audit.entries()] == ["b"]
        assert audit.verify()["ok"]
    with pytest.raises(ConfigError):
        AuditLog(db, retention_days=-1)


def test_questions_can_be_stored_redacted(tmp_path):
    with AuditLog(tmp_path / "ragtune.db", redact_questions=True) as audit:
        audit.record("a", "answer", question="mail jo@example.com or call 13812345678")
        assert audit.entries()[0].question == "mail [EMAIL] or call [PHONE]"


def test_parse_time():
    assert parse_time("2026-12-01") == parse_time("2026-12-01T00:00:00+00:00")
    assert parse_time("1700000000") == 1_700_000_000.0
    assert parse_time(None) is None
    with pytest.raises(ConfigError, match="not a date"):
        parse_time("last tuesday")


WRITER = """
import sys
sys.path.insert(0, {src!r})
from ragtune.guard.audit import AuditLog
log = AuditLog({db!r})
i = 0
while True:
    log.record("key:w", "answer", question="q%d " % i + "x" * 2000, retrieved=["d%d" % j for j in range(50)],
               shown=["d1"], refused=i % 2 == 0, detail={{"n": i}})
    print(i, flush=True)
    i += 1
"""


@pytest.mark.slow
def test_a_sigkill_leaves_only_whole_entries(tmp_path):
    db = tmp_path / "ragtune.db"
    AuditLog(db).close()
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(src=str(SRC), db=str(db))],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
        acknowledged = -1
        assert proc.stdout is not None
        while acknowledged < 20 + 15 * round_:
            acknowledged = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with AuditLog(db) as audit:
            report = audit.verify()
            assert report["ok"], report
            entries = audit.entries(actor="key:w")
            # Every entry the writer saw committed is there, whole.
            mine = [e for e in entries if e.detail["n"] <= acknowledged]
            assert len({e.detail["n"] for e in mine}) == acknowledged + 1
            for e in entries:
                assert len(e.retrieved) == 50 and e.question.endswith("x" * 2000) and json.dumps(e.to_dict())
