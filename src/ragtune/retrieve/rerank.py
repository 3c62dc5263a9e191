"""Reranking after retrieval: a cross-encoder, or an LLM asked whether each passage is relevant.

A reranker scores (query, passage) pairs jointly, which a bi-encoder cannot, and reorders the first
stage's candidates. Each returned hit keeps its first-stage score in ``scores["retrieval"]`` and gets
``scores["rerank"]`` and ``scores["rerank_rank"]``; ``hit.score`` becomes the reranker's score.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragtune.errors import ConfigError
from ragtune.types import Hit

log = logging.getLogger(__name__)

RELEVANCE_PROMPT = (
    "Passage:\n{passage}\n\nQuestion or claim: {query}\n\n"
    "Does the passage contain information that answers the question or supports or refutes the claim? "
    "Answer yes or no."
)
GRADED_PROMPT = (
    "Rate how relevant the passage is to the query on a scale from 0 to 3: 0 = unrelated, 1 = same topic but "
    "does not help, 2 = partly answers, 3 = directly answers. Reply with the number only.\n\n"
    "Query: {query}\n\nPassage:\n{passage}"
)


@runtime_checkable
class Reranker(Protocol):
    """Reorders hits for a query, best first."""

    name: str

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray: ...

    def rerank(self, query: str, hits: list[Hit], top_k: int | None = None) -> list[Hit]: ...


def apply_scores(hits: list[Hit], scores: Sequence[float], top_k: int | None = None) -> list[Hit]:
    """Sort ``hits`` by ``scores`` (stable: ties keep first-stage order) and record both scores on each hit."""
    order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
    ranked = []
    for rank, i in enumerate(order, 1):
        hit = hits[i]
        hit.scores["retrieval"] = float(hit.score)
        hit.scores["rerank"] = float(scores[i])
        hit.scores["rerank_rank"] = float(rank)
        hit.score = float(scores[i])
        ranked.append(hit)
    return ranked[:top_k] if top_k is not None else ranked


def passage_text(hit: Hit) -> str:
    """What the reranker reads: the section title (when the chunk text lacks it) and the chunk text."""
    title = hit.meta.section_title
    if title and not hit.text.lstrip().startswith(title):
        return f"{title}\n{hit.text}"
    return hit.text


class PointwiseReranker:
    """A reranker that scores each (query, passage) pair on its own; subclasses implement ``score``."""

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def rerank(self, query: str, hits: list[Hit], top_k: int | None = None) -> list[Hit]:
        return apply_scores(hits, self.score(query, [passage_text(h) for h in hits]).tolist(), top_k)


class CrossEncoderReranker(PointwiseReranker):
    """A sentence-transformers CrossEncoder over any HF directory or hub id (bge-reranker, ms-marco-MiniLM,
    or one trained by ``ragtune train reranker``), batched, truncated to ``max_length`` tokens.

    ``backend`` 'auto' runs a local directory on ONNX Runtime (exported once into the model cache, see
    ``ragtune.embed.onnx``) and a hub id on torch; ``precision`` 'auto' is int8 where the export's int8 scores
    rank the calibration passages as fp32's do, else fp32."""

    def __init__(
        self, model: str | Path, *, batch_size: int = 32, max_length: int = 512, device: str | None = None,
        num_threads: int | None = None, cache_size: int = 50_000, backend: str = "auto", precision: str = "auto",
    ) -> None:
        if batch_size <= 0:
            raise ConfigError("rerank_batch_size must be greater than 0.")
        if max_length <= 8:
            raise ConfigError("rerank_max_length must be greater than 8.")
        if backend not in ("auto", "onnx", "torch"):
            raise ConfigError(f"rerank_backend '{backend}' is not one of auto, onnx, torch")
        if precision not in ("auto", "fp32", "int8"):
            raise ConfigError(f"rerank_precision '{precision}' is not one of auto, fp32, int8")
        if backend == "torch" and precision == "int8":
            raise ConfigError("rerank_precision 'int8' needs rerank_backend 'onnx' (or 'auto') — torch runs fp32 only")
        if num_threads and (backend == "torch" or device not in (None, "cpu")):
            import torch

            torch.set_num_threads(num_threads)
        self.path = str(model)
        self.name = f"cross-encoder:{self.path}"
        self.batch_size = batch_size
        # Scores of recent (query, passage) pairs: the same question asked again, or an evaluation sweep over
        # settings that only change what happens after scoring, costs no model calls.
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        looks_local = Path(self.path).exists() or self.path.startswith((".", "/", "~"))
        if looks_local and not (Path(self.path).expanduser() / "config.json").is_file():
            raise ConfigError(
                f"cross-encoder '{self.path}' is not a model directory (no config.json) — train one with "
                "'ragtune train reranker' or give an HF directory or hub id"
            )
        self.backend, self.precision = "torch", "fp32"
        self._onnx: tuple[Any, str] | None = None
        if backend != "torch" and device in (None, "cpu"):
            self._onnx = _onnx_cross_encoder(Path(self.path).expanduser(), looks_local, backend, precision,
                                             max_length, num_threads, batch_size)
            if self._onnx is not None:
                self.backend, self.precision = "onnx", self._onnx[0].precision
                return
        try:
            from sentence_transformers import CrossEncoder

            self.model = CrossEncoder(str(Path(self.path).expanduser()) if looks_local else self.path,
                                      max_length=max_length, device=device or "cpu")
        except OSError as exc:
            raise ConfigError(
                f"cannot load cross-encoder '{self.path}': {exc} — give a local directory (models are never "
                "downloaded at run time) or train one with 'ragtune train reranker'"
            ) from exc

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        keys = [hashlib.blake2b(f"{query}\0{text}".encode(), digest_size=16).digest() for text in texts]
        with self._lock:
            known = {i: self._cache[k] for i, k in enumerate(keys) if k in self._cache}
            for i in known:
                self._cache.move_to_end(keys[i])
        todo = [i for i in range(len(texts)) if i not in known]
        if todo:
            fresh = self._predict([(query, texts[i]) for i in todo])
            with self._lock:
                for i, s in zip(todo, np.asarray(fresh, dtype=np.float32).reshape(len(todo)).tolist(), strict=True):
                    known[i] = s
                    self._cache[keys[i]] = s
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return np.asarray([known[i] for i in range(len(texts))], dtype=np.float32)


    def _predict(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if self._onnx is None:
            return np.asarray(self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False,
                                                 convert_to_numpy=True))
        session, activation = self._onnx
        scores = session.run(pairs)
        return 1.0 / (1.0 + np.exp(-scores)) if activation == "sigmoid" else scores


class _OnnxCrossEncoder:
    """The exported cross-encoder's session at one precision, scoring pairs in batches."""

    def __init__(self, runner: Any, precision: str, batch_size: int) -> None:
        self.runner, self.precision, self.batch_size = runner, precision, batch_size

    def run(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        from ragtune.embed.onnx import batch_size_for

        return np.asarray(self.runner.run(pairs, batch_size=batch_size_for(self.precision, self.batch_size))[:, 0])


def _onnx_cross_encoder(path: Path, local: bool, backend: str, precision: str, max_length: int,
                        num_threads: int | None, batch_size: int) -> tuple[_OnnxCrossEncoder, str] | None:
    """The cross-encoder on ONNX Runtime with its activation, or None where 'auto' falls back to torch."""
    from ragtune.embed import checkpoint_hash
    from ragtune.embed.onnx import OnnxRunner, choose_precision, export_onnx, onnx_available

    explicit = backend == "onnx" or precision == "int8"
    if not onnx_available() or not local:
        if explicit:
            raise ConfigError(f"the ONNX reranker needs onnxruntime and onnx and a local model directory ('{path}') "
                              "— install them, download the model, or set rerank_backend = \"torch\"")
        return None
    try:
        export = export_onnx(path, checkpoint_hash(str(path)), kind="cross-encoder")
    except ConfigError:
        if explicit:
            raise
        log.warning("cross-encoder '%s' could not be exported to ONNX; running it on torch", path, exc_info=True)
        return None
    chosen = choose_precision(export, precision)
    runner = OnnxRunner(export.model_file(chosen), Path(export.directory) / "tokenizer.json", inputs=export.inputs,
                        pad_id=export.pad_id, max_seq_length=max_length, do_lower_case=False, num_threads=num_threads)
    return _OnnxCrossEncoder(runner, chosen, batch_size), export.activation


class LLMReranker(PointwiseReranker):
    """Pointwise relevance from an LLM. The local backend scores logit("yes") − logit("no") in batches;
    other backends answer a graded 0–3 prompt, several requests at a time."""

    def __init__(self, llm: Any, *, batch_size: int = 8, max_passage_chars: int = 1200, workers: int = 4) -> None:
        if batch_size <= 0:
            raise ConfigError("rerank_batch_size must be greater than 0.")
        if workers <= 0:
            raise ConfigError("workers must be greater than 0.")
        self.llm = llm
        self.name = f"llm:{getattr(llm, 'name', type(llm).__name__)}"
        self.batch_size = batch_size
        self.max_passage_chars = max_passage_chars
        self.workers = workers

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        passages = [t[: self.max_passage_chars] for t in texts]
        if hasattr(self.llm, "score_yes_no"):
            prompts = [RELEVANCE_PROMPT.format(passage=p, query=query) for p in passages]
            return np.asarray(self.llm.score_yes_no(prompts, batch_size=self.batch_size), dtype=np.float32)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            grades = list(pool.map(lambda p: self._grade(query, p), passages))
        return np.asarray(grades, dtype=np.float32)

    def _grade(self, query: str, passage: str) -> float:
        messages = [{"role": "user", "content": GRADED_PROMPT.format(query=query, passage=passage)}]
        try:
            reply = self.llm.chat(messages, max_tokens=4, temperature=0.0)
        except Exception as exc:  # one failed pair must not sink the whole ranking
            log.warning("LLM reranker: grading failed (%s); scoring the passage 0", exc)
            return 0.0
        return parse_grade(reply)


def parse_grade(reply: str) -> float:
    """The 0–3 grade in an LLM reply ("2", "Score: 3/3", "**1**"); 0 when there is none."""
    match = re.search(r"(?<![\d.])([0-3])(?:\.\d+)?(?![\d.])", reply or "")
    return float(match.group(1)) if match else 0.0


def parse_rerank_spec(spec: str | None) -> tuple[str, str]:
    """('none'|'cross-encoder'|'llm', model) from a setting like ``cross-encoder:models/rr`` or ``llm``."""
    if spec is None or spec.strip().lower() in ("", "none", "off", "false"):
        return "none", ""
    kind, _, model = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "cross-encoder":
        if not model:
            raise ConfigError("rerank 'cross-encoder' needs a model: 'cross-encoder:PATH_OR_HUB_ID'")
        return kind, model
    if kind == "llm":
        return kind, model
    raise ConfigError(f"unknown reranker '{spec}' — use 'cross-encoder:PATH', 'llm' or 'none'")
