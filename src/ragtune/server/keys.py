"""API keys: created once and shown once, stored only as SHA-256 digests, each with a role and a knowledge base."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.guard.acl import viewer_groups
from ragtune.store.postgres import Database, ensure_columns, open_database

ROLES: tuple[str, ...] = ("reader", "writer", "admin")
ALL_KBS = "*"
KEY_PREFIX = "rt"

_SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    kb TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    name TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
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
    """The ``api_keys`` table of the server database (a SQLite file, or Postgres shared by several servers)."""

    def __init__(self, db: str | Path | Database) -> None:
        self._owns_db = isinstance(db, (str, Path))  # a database handed in is closed by its owner
        self._db = open_database(db)
        self._db.execute(_SCHEMA)
        ensure_columns(self._db, "api_keys", {_GROUPS_COLUMN: "TEXT"})

    def close(self) -> None:
        if self._owns_db:
            self._db.close()

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
        self._db.execute(
            "INSERT INTO api_keys (id, digest, kb, role, name, created_at, groups) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_id, digest(secret), kb, role, name, record.created_at,
             json.dumps(list(names)) if names is not None else None),
        )
        return secret, record

    def verify(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None."""
        wanted = digest(secret)
        rows = self._db.execute(f"SELECT digest, {_COLUMNS} FROM api_keys WHERE digest = ?", (wanted,))
        if not rows:
            return None
        row = rows[0]
        if not hmac.compare_digest(row["digest"], wanted) or row["revoked_at"] is not None:
            return None
        return _key(row)

    def list(self) -> list[ApiKey]:
        return [_key(row) for row in self._db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False when there is no such live key."""
        rows = self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id", (time.time(), key_id)
        )
        return len(rows) == 1


def _key(row: Mapping[str, Any]) -> ApiKey:
    """An ApiKey from a row with the columns of ``_COLUMNS``."""
    groups = row["groups"]
    return ApiKey(row["id"], row["kb"], row["role"], row["name"], row["created_at"], row["revoked_at"],
                  tuple(json.loads(groups)) if groups is not None else None)
