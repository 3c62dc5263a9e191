"""API keys: created once and shown once, stored only as SHA-256 digests, each with a role and a knowledge base."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import ConfigError
from ragtune.store.postgres import Database, open_database

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


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never the secret): its id, scope and role."""

    id: str
    kb: str
    role: str
    name: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None

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
        self._db = open_database(db)
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, kb: str, role: str, name: str = "") -> tuple[str, ApiKey]:
        """A new key for ``kb`` ('*': every KB) with ``role``; returns the secret (shown once) and its record."""
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not kb:
            raise ConfigError("a key needs a knowledge base name, or '*' for all of them")
        key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, kb, role, name, time.time())
        self._db.execute(
            "INSERT INTO api_keys (id, digest, kb, role, name, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, digest(secret), kb, role, name, record.created_at),
        )
        return secret, record

    def verify(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None."""
        wanted = digest(secret)
        rows = self._db.execute(
            "SELECT id, digest, kb, role, name, created_at, revoked_at FROM api_keys WHERE digest = ?", (wanted,)
        )
        if not rows:
            return None
        row = rows[0]
        if not hmac.compare_digest(row["digest"], wanted) or row["revoked_at"] is not None:
            return None
        return ApiKey(row["id"], row["kb"], row["role"], row["name"], row["created_at"], row["revoked_at"])

    def list(self) -> list[ApiKey]:
        rows = self._db.execute("SELECT id, kb, role, name, created_at, revoked_at FROM api_keys ORDER BY created_at")
        return [ApiKey(r["id"], r["kb"], r["role"], r["name"], r["created_at"], r["revoked_at"]) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False when there is no such live key."""
        rows = self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id", (time.time(), key_id)
        )
        return len(rows) == 1
