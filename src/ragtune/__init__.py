"""ragtune: private-knowledge RAG and fine-tuning, offline on one CPU. Start with ``ragtune.KnowledgeBase``."""

import importlib.metadata
from typing import Any

__version__ = importlib.metadata.version("ragtune")
__all__ = ["KnowledgeBase"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import ragtune` (and the CLI's --help) stays instant.
    if name == "KnowledgeBase":
        from ragtune.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'ragtune' has no attribute {name!r}")
