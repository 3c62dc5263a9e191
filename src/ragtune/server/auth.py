"""Who is calling: bearer API keys, per-knowledge-base roles, and a token-bucket rate limit per key."""

from __future__ import annotations

import math
import threading
import time

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ragtune.server.errors import ApiError
from ragtune.server.keys import ALL_KBS, ApiKey, KeyStore

bearer = HTTPBearer(auto_error=False, description="An API key from 'ragtune keys create'.")
#: The identity of every request when the server runs without keys (--no-auth, loopback only).
ANONYMOUS_ADMIN = ApiKey("anonymous", ALL_KBS, "admin", "auth disabled")


class RateLimiter:
    """Token buckets: each key gets ``burst`` requests at once, refilled at ``per_minute`` per minute."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before trying again."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


class Authenticator:
    """Turns the Authorization header into an ApiKey, or a 401/429 with a body that says what to do."""

    def __init__(self, keys: KeyStore | None, limiter: RateLimiter, on_limited: object = None) -> None:
        self.keys = keys
        self.limiter = limiter
        self.on_limited = on_limited

    def identify(self, credentials: HTTPAuthorizationCredentials | None) -> ApiKey:
        if self.keys is None:
            return ANONYMOUS_ADMIN
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "missing API key — send the header 'Authorization: Bearer <key>' (create a key with "
                           "'ragtune keys create --kb KB_FOLDER --role reader')", "authentication_error",
                           "missing_api_key", headers={"WWW-Authenticate": "Bearer"})
        key = self.keys.verify(credentials.credentials)
        if key is None:
            raise ApiError(401, "invalid or revoked API key — check it, or create a new one with 'ragtune keys "
                           "create'", "authentication_error", "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        wait = self.limiter.take(key.id)
        if wait > 0:
            if callable(self.on_limited):
                self.on_limited()
            raise ApiError(429, f"rate limit of this API key exceeded — retry in {wait:.1f} s",
                           "rate_limit_error", "rate_limited", headers={"Retry-After": str(math.ceil(wait))})
        return key


def authorize(key: ApiKey, kb: str | None, role: str) -> None:
    """403 unless ``key`` may act on ``kb`` with ``role``."""
    if key.allows(kb, role):
        return
    if not key.allows(None, role):
        raise ApiError(403, f"this API key has the role '{key.role}'; this needs '{role}' — ask an admin for a "
                       f"key with that role", "permission_error", "insufficient_role")
    # Said the same whether or not ``kb`` exists: a key for one KB learns nothing about the others.
    raise ApiError(403, f"this API key is for the knowledge base '{key.kb}' only, so it cannot use '{kb}' — use "
                   f"'kb:{key.kb}' (GET /v1/models lists what this key can use), or ask an admin for a key for that "
                   "knowledge base", "permission_error", "wrong_kb")
