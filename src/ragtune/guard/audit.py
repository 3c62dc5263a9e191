"""The audit log: who searched, asked or exported what, and which documents they were shown — append-only.

Entries live in the knowledge base's own database (table ``audit``), written by a connection of their own with
``synchronous=FULL``: each entry is one transaction, so a process killed at any moment leaves whole entries or
none. Triggers refuse updates, and deletes of anything newer than the retention cut-off; each entry carries the
SHA-256 of the one before it and of its own content, so ``verify`` finds an entry changed or removed behind
ragtune's back (with write access to the file, someone can still rewrite the whole chain — keep a copy elsewhere
when that matters).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, StoreError
from ragtune.guard.pii import redact

#: What an entry records: a search, an answer (or refusal), an export of data, or a change of access groups.
ACTIONS: tuple[str, ...] = ("search", "answer", "export", "acl")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        question TEXT NOT NULL DEFAULT '',
        groups TEXT,
        retrieved TEXT NOT NULL DEFAULT '[]',
        shown TEXT NOT NULL DEFAULT '[]',
        refused INTEGER,
        detail TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_created ON audit (created_at)",
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_retention_only BEFORE DELETE ON audit
       WHEN old.created_at >= COALESCE((SELECT CAST(value AS REAL) FROM audit_meta WHERE key = 'purged_before'), 0)
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: only entries older than the retention period are removed, by ragtune audit --purge'); END""",  # noqa: E501
    """CREATE TRIGGER IF NOT EXISTS audit_cutoff_forward BEFORE UPDATE ON audit_meta
       WHEN new.key = 'purged_before' AND CAST(new.value AS REAL) < CAST(old.value AS REAL)
       BEGIN SELECT RAISE(ABORT, 'the audit retention cut-off only moves forward'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_meta_kept BEFORE DELETE ON audit_meta
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)
_HASHED = ("created_at", "actor", "action", "question", "groups", "retrieved", "shown", "refused", "detail")


@dataclass
class AuditEntry:
    """One audited event. ``retrieved``: document ids the retrievers returned; ``shown``: those whose text the
    caller saw (sources, citations, snippets, closest sources of a refusal, exported rows). ``groups`` are the
    viewer's access groups (None: unrestricted); ``refused`` is None for anything but answers."""

    actor: str
    action: str
    question: str = ""
    groups: list[str] | None = None
    retrieved: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    refused: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = datetime.fromtimestamp(self.created_at, UTC).isoformat(timespec="seconds")
        return data


def _ordered_unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class AuditLog:
    """The ``audit`` table of a knowledge base's database.

    ``retention_days`` (0: keep forever) is applied by :meth:`purge`, which runs once when the log is opened.
    ``redact_questions`` stores questions with personal data replaced (``[EMAIL]``, ``[PHONE]``, ...).
    """

    def __init__(self, db_path: str | Path, *, retention_days: float = 0, redact_questions: bool = False) -> None:
        if retention_days < 0:
            raise ConfigError("audit_retention_days must be >= 0 (0 keeps every entry).")
        db_path = Path(db_path)
        if not db_path.parent.is_dir():
            raise StoreError(f"no knowledge base at {db_path.parent} — create it first")
        self.retention_days = retention_days
        self.redact_questions = redact_questions
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # A security record is worth an fsync per entry: it survives power loss, not only a killed process.
        self._conn.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    self._conn.execute(statement)
                self._conn.execute("INSERT OR IGNORE INTO audit_meta VALUES ('purged_before', '0')")
                self._conn.execute("INSERT OR IGNORE INTO audit_meta VALUES ('anchor', '')")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        if retention_days:
            self.purge()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def record(
        self, actor: str, action: str, *, question: str = "", groups: Iterable[str] | None = None,
        retrieved: Sequence[str] = (), shown: Sequence[str] = (), refused: bool | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry (one transaction: it is stored whole or not at all)."""
        if action not in ACTIONS:
            raise ConfigError(f"unknown audit action {action!r} — one of {', '.join(ACTIONS)}")
        entry = AuditEntry(
            actor=actor, action=action, question=redact(question) if self.redact_questions else question,
            groups=sorted(groups) if groups is not None else None, retrieved=_ordered_unique(retrieved),
            shown=_ordered_unique(shown), refused=refused, detail=dict(detail or {}), created_at=time.time(),
        )
        row = _row(entry)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                last = self._conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                prev = last[0] if last else self._anchor()
                digest = _digest(prev, row)
                cursor = self._conn.execute(
                    f"INSERT INTO audit ({', '.join(_HASHED)}, prev_hash, hash) VALUES ({', '.join('?' * 11)})",
                    (*(row[k] for k in _HASHED), prev, digest),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        entry.seq = int(cursor.lastrowid or 0)
        return entry

    def purge(self, now: float | None = None) -> int:
        """Remove entries older than the retention period (none when it is 0); returns how many. The hash of the
        last one removed is kept, so :meth:`verify` still checks the chain from the first entry left."""
        if not self.retention_days:
            return 0
        cutoff = (now or time.time()) - self.retention_days * 86400
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current = float(self._conn.execute(
                    "SELECT value FROM audit_meta WHERE key = 'purged_before'").fetchone()[0])
                if cutoff <= current:
                    self._conn.execute("COMMIT")
                    return 0
                last = self._conn.execute(
                    "SELECT hash FROM audit WHERE created_at < ? ORDER BY seq DESC LIMIT 1", (cutoff,)).fetchone()
                self._conn.execute("UPDATE audit_meta SET value = ? WHERE key = 'purged_before'", (repr(cutoff),))
                removed = self._conn.execute("DELETE FROM audit WHERE created_at < ?", (cutoff,)).rowcount
                if last is not None:
                    self._conn.execute("UPDATE audit_meta SET value = ? WHERE key = 'anchor'", (last[0],))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return int(removed)

    def _anchor(self) -> str:
        row = self._conn.execute("SELECT value FROM audit_meta WHERE key = 'anchor'").fetchone()
        return row[0] if row else ""

    # ------------------------------------------------------------------ reading

    def entries(
        self, *, since: float | None = None, until: float | None = None, actor: str | None = None,
        action: str | None = None, limit: int | None = None,
    ) -> list[AuditEntry]:
        """Entries oldest first (with ``limit``: the newest ``limit`` of them, still oldest first)."""
        where, params = [], []
        for clause, value in (("created_at >= ?", since), ("created_at < ?", until), ("actor = ?", actor),
                              ("action = ?", action)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            self._conn.row_factory = sqlite3.Row
            try:
                rows = self._conn.execute(sql, params).fetchall()
            finally:
                self._conn.row_factory = None
        return [_entry(r) for r in reversed(rows)]

    def verify(self) -> dict[str, Any]:
        """Recompute the hash chain: ``ok`` is False when an entry was changed, inserted or removed outside
        retention, with the first broken entry's sequence number."""
        with self._lock:
            self._conn.row_factory = sqlite3.Row
            try:
                self._conn.execute("BEGIN")
                try:
                    prev = self._anchor()
                    rows = self._conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
                finally:
                    self._conn.execute("COMMIT")
            finally:
                self._conn.row_factory = None
        for r in rows:
            row = {k: r[k] for k in _HASHED}
            if r["prev_hash"] != prev:
                return {"ok": False, "entries": len(rows), "broken_at": r["seq"],
                        "problem": "an entry before it is missing or was changed"}
            if _digest(prev, row) != r["hash"]:
                return {"ok": False, "entries": len(rows), "broken_at": r["seq"], "problem": "the entry was changed"}
            prev = r["hash"]
        return {"ok": True, "entries": len(rows), "broken_at": None, "problem": None}


def parse_time(value: str | float | None) -> float | None:
    """A time bound as given to ``ragtune audit --since``: an ISO date or date-time (UTC unless it says), or
    seconds since the epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{value!r} is not a date — write e.g. 2026-12-01 or 2026-12-01T09:30") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "created_at": entry.created_at, "actor": entry.actor, "action": entry.action, "question": entry.question,
        "groups": json.dumps(entry.groups) if entry.groups is not None else None,
        "retrieved": json.dumps(entry.retrieved), "shown": json.dumps(entry.shown),
        "refused": None if entry.refused is None else int(entry.refused),
        "detail": json.dumps(entry.detail, ensure_ascii=False, sort_keys=True),
    }


def _digest(prev: str, row: dict[str, Any]) -> str:
    payload = json.dumps([prev, *(row[k] for k in _HASHED)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _entry(r: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        actor=r["actor"], action=r["action"], question=r["question"],
        groups=json.loads(r["groups"]) if r["groups"] is not None else None, retrieved=json.loads(r["retrieved"]),
        shown=json.loads(r["shown"]), refused=None if r["refused"] is None else bool(r["refused"]),
        detail=json.loads(r["detail"]), created_at=r["created_at"], seq=r["seq"],
    )
