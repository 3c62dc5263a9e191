"""API keys: created once and shown once, stored only as SHA-256 digests, each with a role and a knowledge base."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.guard.acl import viewer_groups

ROLES: tuple[str, ...] = ("reader", "writer", "admin")
ALL_KBS = "*"
KEY_PREFIX = "rt"

_SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    kb TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    revoked_at REAL
)"""
# Added later, in place on older databases: the key's access groups as JSON (NULL: every document).
_GROUPS_COLUMN = "groups"
_COLUMNS = "id, kb, role, name, created_at, revoked_at, groups"


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never the secret): its id, scope, role and access groups (None: every document)."""

    id: str
    kb: str
    role: str
    name: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None
    groups: tuple[str, ...] | None = None

    @property
    def actor(self) -> str:
        """The key as the audit log names it."""
        return f"key:{self.id}"

    def allows(self, kb: str | None, role: str) -> bool:
        """Whether this key may act on ``kb`` (None: no particular KB) with at least ``role``."""
        if ROLES.index(self.role) < ROLES.index(role):
            return False
        return self.kb == ALL_KBS or kb is None or self.kb == kb


def digest(secret: str) -> str:
    # Keys are 256-bit random tokens, not passwords: a fast hash is safe against brute force, and a slow
    # one (PBKDF2) would cost every request tens of milliseconds for no gain. A stolen database yields no keys.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyStore:
    """The ``api_keys`` table of the server database."""

    def __init__(self, db_path: str | Path) -> None:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(api_keys)")}
        if _GROUPS_COLUMN not in present:
            self._conn.execute(f"ALTER TABLE api_keys ADD COLUMN {_GROUPS_COLUMN} TEXT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create(
        self, kb: str, role: str, name: str = "", *, groups: str | Iterable[str] | None = None
    ) -> tuple[str, ApiKey]:
        """A new key for ``kb`` ('*': every KB) with ``role`` and, optionally, access ``groups`` (the key then sees
        only documents of those groups); returns the secret (shown once) and its record."""
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not kb:
            raise ConfigError("a key needs a knowledge base name, or '*' for all of them")
        scope = viewer_groups(groups)
        names = tuple(sorted(scope)) if scope is not None else None
        key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, kb, role, name, time.time(), groups=names)
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (id, digest, kb, role, name, created_at, groups) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, digest(secret), kb, role, name, record.created_at,
                 json.dumps(list(names)) if names is not None else None),
            )
        return secret, record

    def verify(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None."""
        wanted = digest(secret)
        with self._lock:
            row = self._conn.execute(f"SELECT digest, {_COLUMNS} FROM api_keys WHERE digest = ?",
                                     (wanted,)).fetchone()
        if row is None or not hmac.compare_digest(row[0], wanted) or row[6] is not None:
            return None
        return _key(row[1:])

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False when there is no such live key."""
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
            )
        return cursor.rowcount == 1


def _key(row: Any) -> ApiKey:
    """An ApiKey from a row of ``_COLUMNS``."""
    key_id, kb, role, name, created_at, revoked_at, groups = row
    return ApiKey(key_id, kb, role, name, created_at, revoked_at,
                  tuple(json.loads(groups)) if groups is not None else None)
