"""The ``ragtune data`` commands, ``ragtune train embedder`` and ``ragtune kb reembed`` (registered on the main app)."""

from __future__ import annotations
