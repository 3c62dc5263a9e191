"""ragtune: private-knowledge RAG and fine-tuning, offline on one CPU. Start with ``ragtune.KnowledgeBase``."""

import importlib.metadata
import os
from typing import Any

# transformers >= 5.x fetches "hub kernels" (code from the Hugging Face Hub) for models it loads, by default; offline
# that fails on a GPU as soon as training starts ("not available in the local cache"), and online it runs downloaded
# code. ragtune runs offline on what is installed: off unless the user sets USE_HUB_KERNELS themselves.
os.environ.setdefault("USE_HUB_KERNELS", "0")

__version__ = importlib.metadata.version("ragtune")
__all__ = ["KnowledgeBase"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import ragtune` (and the CLI's --help) stays instant.
    if name == "KnowledgeBase":
        from ragtune.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'ragtune' has no attribute {name!r}")
