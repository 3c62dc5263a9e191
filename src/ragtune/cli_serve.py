"""The ``ragtune serve`` and ``ragtune keys`` commands (registered on the main app)."""

from __future__ import annotations
