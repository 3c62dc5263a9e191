"""Retrieval evaluation on a BEIR data set: build (or reuse) a KB from the corpus, run the queries, score."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError
from ragtune.evaluate.beir import BeirDataset, load_beir
from ragtune.evaluate.ir import DEFAULT_METRICS, evaluate
from ragtune.kb import KnowledgeBase
from ragtune.retrieve import MODES, REWRITES, parse_rerank_spec
from ragtune.types import Block, BlockType, Document

# Chunks fetched per query before they are folded into documents, so Recall@100 counts 100 documents.
CHUNK_DEPTH = 200

ProgressFn = Callable[[str, int, int], None]


def corpus_documents(dataset: BeirDataset, name: str) -> Iterator[tuple[str, Document]]:
    """One document per corpus entry: the title as a heading block, then the text."""
    for doc_id, entry in dataset.corpus.items():
        blocks = []
        if entry.get("title"):
            blocks.append(Block(type=BlockType.HEADING, text=entry["title"], level=1, heading_path=[entry["title"]]))
        blocks.append(Block(type=BlockType.PARAGRAPH, text=entry.get("text", ""),
                            heading_path=[entry["title"]] if entry.get("title") else []))
        uri = f"beir:{name}/{doc_id}"
        yield uri, Document.assemble(blocks, source=uri, source_type="beir", title=entry.get("title") or None)


@dataclass(frozen=True)
class RetrievalConfig:
    """One retrieval configuration to measure: a mode, a query rewrite and a reranker spec."""

    mode: str = "hybrid"
    rewrite: str = "none"
    rerank: str = "none"

    @property
    def label(self) -> str:
        label = self.mode
        if self.rewrite != "none":
            label += f"+{self.rewrite}"
        if self.rerank != "none":
            kind, model = parse_rerank_spec(self.rerank)
            label += f"+rerank:{kind}" + (f"({Path(model).name})" if model else "")
        return label


def configurations(
    modes: Sequence[str], rewrites: Sequence[str] = (), reranks: Sequence[str] = ()
) -> list[RetrievalConfig]:
    """Every mode alone, then each mode with each rewrite and/or each reranker (cross product)."""
    for mode in modes:
        if mode not in MODES:
            raise ConfigError(f"unknown mode '{mode}' — choose from {', '.join(MODES)}")
    for rewrite in rewrites:
        if rewrite not in REWRITES:
            raise ConfigError(f"unknown rewrite '{rewrite}' — choose from {', '.join(REWRITES)}")
    for spec in reranks:
        parse_rerank_spec(spec)
    configs = [RetrievalConfig(mode, rw, rr) for mode in modes for rw in ("none", *rewrites)
               for rr in ("none", *reranks)]
    return list(dict.fromkeys(configs))


def evaluate_beir(
    beir_dir: Path, kb_path: Path, *, split: str = "test", modes: Sequence[str] = ("hybrid",),
    rewrites: Sequence[str] = (), reranks: Sequence[str] = (), embedder: str | None = None,
    chunk_size: int | None = None, limit: int | None = None, query_ids: Sequence[str] | None = None,
    on_progress: ProgressFn | None = None, **overrides: Any,
) -> dict[str, Any]:
    """Metrics (trec_eval semantics) and latency per configuration (see ``configurations``). The KB is
    ingested incrementally, so a second run over the same corpus reuses it."""
    configs = configurations(modes, rewrites, reranks)
    dataset = load_beir(Path(beir_dir), split)
    name = Path(beir_dir).resolve().name
    queries = dict(dataset.queries)
    if query_ids is not None:
        unknown = [q for q in query_ids if q not in queries]
        if unknown:
            raise ConfigError(f"query ids not in the {split} split: {', '.join(unknown[:5])}")
        queries = {q: queries[q] for q in query_ids}
    if limit is not None:
        queries = dict(list(queries.items())[:limit])
    qrels = {q: dataset.qrels[q] for q in queries}

    with KnowledgeBase.open(kb_path, create=True, embedder=embedder, chunk_size=chunk_size, **overrides) as kb:
        started = time.perf_counter()
        report = kb.ingest_documents(
            corpus_documents(dataset, name), total=len(dataset.corpus),
            on_progress=(
                (lambda p: on_progress("indexing corpus", p.files_done, p.files_total)) if on_progress else None
            ),
        )
        build_seconds = time.perf_counter() - started
        prefix = f"beir:{name}/"
        results: dict[str, Any] = {}
        for config in configs:
            run: dict[str, dict[str, float]] = {}
            latencies = []
            stages: dict[str, list[float]] = {}
            notes = 0
            for n, (qid, text) in enumerate(queries.items()):
                t = time.perf_counter()
                result = kb.retrieve(text, CHUNK_DEPTH, mode=config.mode, candidates=CHUNK_DEPTH,
                                     rewrite=config.rewrite, rerank=config.rerank)
                latencies.append((time.perf_counter() - t) * 1000)
                for stage, ms in result.timings.items():
                    stages.setdefault(stage, []).append(ms)
                notes += bool(result.notes)
                ranked: dict[str, float] = {}
                for hit in result.hits:
                    doc = hit.source.removeprefix(prefix)
                    if doc not in ranked and len(ranked) < 100:
                        # Score by rank so trec_eval's tie-breaking cannot reorder the documents.
                        ranked[doc] = 1.0 / (len(ranked) + 1)
                run[qid] = ranked
                if on_progress:
                    on_progress(f"{config.label} queries", n + 1, len(queries))
            results[config.label] = {
                "mode": config.mode, "rewrite": config.rewrite, "rerank": config.rerank,
                "metrics": {k: round(v, 4) for k, v in evaluate(run, qrels, DEFAULT_METRICS).items()},
                "latency_ms": _percentiles(latencies),
                "stages_ms": {stage: _percentiles(ms) for stage, ms in stages.items()},
                "fallbacks": notes,
            }
        stats = kb.stats()
        settings = kb.settings
    return {
        "dataset": name, "split": split, "queries": len(queries), "corpus": len(dataset.corpus),
        "kb": str(kb_path), "embedder": stats["embedder"], "chunks": stats["chunks"],
        "chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap,
        "ingest": {**report.to_dict(), "build_seconds": round(build_seconds, 2)},
        "modes": results,
    }


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not len(values):
        return {}
    arr = np.asarray(values)
    return {"p50": round(float(np.percentile(arr, 50)), 2), "p95": round(float(np.percentile(arr, 95)), 2)}
