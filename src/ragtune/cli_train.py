"""The ``ragtune train`` and ``ragtune model`` commands for LLM fine-tuning (registered on the main app)."""

from __future__ import annotations
