"""Document encoding in bfloat16 on CPUs with AMX (Intel Xeon 4th generation and later), for fp32 knowledge bases.

On such a CPU, torch runs the sentence-transformers model in bf16 through oneDNN's AMX kernels: on one thread the
bundled MiniLM encodes SciFact abstracts in 15 ms each against 59 ms for ONNX fp32, and its vectors keep a cosine
of 0.99995 to fp32's (``bench/results/embed_speed.json``). So on AMX an
ONNX embedder at fp32 encodes *documents* (bulk work: ingest, re-embed; batches of ``BF16_MIN_TEXTS`` or more, and
every batch once the model is loaded) in bf16 and keeps queries on ONNX fp32 — the vectors are fp32's to within
rounding, as the GPU's fp16 ones are, and the KB records fp32. It is not the default: ONNX int8 (16 ms per chunk)
is about as fast, and int8 queries cost half of fp32's (``bench/results/peer_llamaindex_bf16_documents.json``: a
SciFact ingest with bf16 documents took 185 s against 174 s in int8). Without AMX, bf16 is emulated and slow, so
it is never used there.

Whether a model keeps its vectors in bf16 is measured once per export on the calibration texts and cached beside it
(``bf16.json``): a model whose bf16 vectors drift (mean cosine below 0.9995 or any below 0.999) is not encoded in bf16.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.embed.base import normalise
from ragtune.files import atomic_write_json

log = logging.getLogger(__name__)

#: bf16 document vectors must follow fp32 this closely on the calibration texts (mean, min cosine).
BF16_MIN_AGREEMENT = (0.9995, 0.999)
#: Texts per bf16 batch: on 1,024 SciFact chunks, one thread, 16 was fastest (8: 14.5 ms, 16: 13.9, 32: 16.7 each).
BF16_BATCH = 16
#: Fewer documents than this go to ONNX fp32 until the bf16 model is loaded: importing torch and loading the model
#: takes a few seconds, which encoding a handful of passages 44 ms faster each does not pay back.
BF16_MIN_TEXTS = 128
_RECORD = "bf16.json"


class Bf16DocumentEncoder:
    """A sentence-transformers model in bf16 on the CPU: normalised fp32 vectors of passages, batched by length
    (sentence-transformers sorts them). The model loads at the first call, so a process that only answers queries
    never imports torch for it."""

    def __init__(self, path: str, *, batch_size: int = BF16_BATCH, num_threads: int | None = None) -> None:
        self.path = path
        self.batch_size = max(1, min(batch_size, BF16_BATCH))
        self.num_threads = num_threads
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # it would interleave with ragtune's own progress output
            if self.num_threads:
                torch.set_num_threads(self.num_threads)
            model = SentenceTransformer(self.path, device="cpu")
            model.to(torch.bfloat16)
            model.eval()
            self._model = model
        return self._model

    def worth_it(self, count: int) -> bool:
        """Whether ``count`` documents should go to bf16: once the model is loaded always, before that only a
        batch large enough to pay for loading it."""
        return self._model is not None or count >= BF16_MIN_TEXTS

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised fp32 vectors of ``texts`` (prefixes already applied by the caller)."""
        model = self._load()
        vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                               normalize_embeddings=False, show_progress_bar=False)
        return normalise(vectors.float().cpu().numpy())


def bf16_agreement(export_dir: str | Path, path: str, reference: Callable[[], np.ndarray],
                   texts: Sequence[str]) -> dict[str, float]:
    """Cosine of bf16 vectors to ``reference()`` (fp32 vectors of ``texts``), measured once and cached in the
    export folder; a cache made from other texts or another model folder is measured again."""
    record = Path(export_dir) / _RECORD
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    try:
        cached = json.loads(record.read_text())
        if cached.get("texts") == digest and cached.get("source") == str(path):
            return {"mean": float(cached["mean"]), "min": float(cached["min"])}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    vectors = Bf16DocumentEncoder(path).encode(texts)
    cosines = np.sum(vectors * normalise(np.asarray(reference(), dtype=np.float32)), axis=1)
    result = {"mean": round(float(cosines.mean()), 6), "min": round(float(cosines.min()), 6)}
    try:  # a read-only cache only costs the measurement next time
        atomic_write_json(record, {**result, "texts": digest, "source": str(path)}, indent=None)
    except OSError:
        log.debug("could not cache the bf16 agreement in %s", record, exc_info=True)
    return result


def bf16_ok(agreement: dict[str, float]) -> bool:
    mean, low = BF16_MIN_AGREEMENT
    return agreement["mean"] >= mean and agreement["min"] >= low
