"""The Embedder protocol and the per-model query/passage prefixes, kept in one place."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ragtune.tokens import TokenCounter


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised float32 vectors; queries and passages may be encoded differently."""

    name: str
    dim: int

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def token_counter(self) -> TokenCounter: ...


# (pattern on the model name or path, query prefix, passage prefix). Models trained with
# instructions lose several nDCG points when they are left out, so they are applied here, once.
_PREFIXES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"e5", re.I), "query: ", "passage: "),
    (re.compile(r"bge-.*-zh", re.I), "为这个句子生成表示以用于检索相关文章：", ""),
    (re.compile(r"bge-.*-en", re.I), "Represent this sentence for searching relevant passages: ", ""),
    (re.compile(r"nomic-embed", re.I), "search_query: ", "search_document: "),
]


def prefixes_for(model_name: str) -> tuple[str, str]:
    """Query and passage prefixes that ``model_name`` was trained with ("" when it needs none)."""
    for pattern, query_prefix, passage_prefix in _PREFIXES:
        if pattern.search(model_name):
            return query_prefix, passage_prefix
    return "", ""


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit-length float32 rows (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms
