"""Query latency on SciFact, then insert throughput, open time, latency and ANN recall on a large synthetic store.

Part 1 — SciFact (5,183 abstracts, the default settings): p50/p95 latency of ``kb.retrieve`` over the 809
train queries for sparse, dense and hybrid (the three modes interleaved query by query, so load changes hit
them alike), plus each stage's own timing (embed, dense, sparse, fuse, fetch).

Part 2 — a synthetic store of N chunks (default 1,000,000) written through ``LocalStore.apply``:

* vectors: real all-MiniLM-L6-v2 embeddings of the SciFact chunks, each synthetic vector one of them plus
  Gaussian noise shaped like the real embeddings' covariance, re-normalised (pure random 384-d vectors have
  no neighbourhood structure and are unrealistically hard for HNSW). The JSON compares nearest-neighbour
  similarities of the synthetic set with those of the real one.
* text: the sentences of the same SciFact chunk, about a quarter dropped, plus one sentence from elsewhere;
  BM25 tokens are built from pre-tokenised sentences (the Ingestor also tokenises before the store).
* documents of 1..2*mean chunks, each with a ``source_type`` among five, one of which (``docx``) holds
  about 20 % of the chunks and serves as the metadata filter.

It measures insert throughput (with the time split into HNSW, BM25 and the SQLite rest), save-on-close
and reopen time, then with real SciFact queries (text for BM25, MiniLM query vectors for dense): HNSW
recall@10 against exact numpy search for several ef_search values, unfiltered and filtered, and p50/p95
of sparse, dense and fused (RRF) queries. Query embedding is not part of part 2 (part 1 times it).
Peak RSS and the load average (the machine's two cores are shared) are recorded.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/query_latency.py --kb /tmp/scifact-kb --synthetic 1000000
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS_DIR,
    Phase,
    default_scifact_dir,
    loadavg,
    machine,
    peak_rss_mib,
    percentiles,
    print_table,
    write_json,
)

from ragtune.embed import load_embedder  # noqa: E402
from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.retrieval import corpus_documents  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.retrieve.fusion import reciprocal_rank_fusion  # noqa: E402
from ragtune.store.local import DB_FILE, DocumentRecord, DocumentUpdate, LocalStore  # noqa: E402
from ragtune.store.text import tokenize  # noqa: E402
from ragtune.types import Chunk, ChunkMeta  # noqa: E402

MODES = ("sparse", "dense", "hybrid")
SOURCE_TYPES = ("pdf", "html", "docx", "markdown", "txt")
SOURCE_WEIGHTS = (0.35, 0.2, 0.2, 0.15, 0.1)
FILTER = {"source_type": "docx"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=default_scifact_dir(), help="BEIR SciFact folder")
    p.add_argument("--kb", type=Path, default=None,
                   help="an existing SciFact KB (e.g. from ingest_speed.py --kb); default: build one in a temp dir")
    p.add_argument("--k", type=int, default=10, help="hits per query")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the SciFact part / KB build")
    p.add_argument("--skip-scifact", action="store_true", help="skip part 1 (the KB still supplies vectors)")
    p.add_argument("--synthetic", type=int, default=1_000_000, help="chunks in the synthetic store (0: skip)")
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--hnsw-ef-construction", type=int, default=100)
    p.add_argument("--ef-search", default="16,32,64,128,256", help="ef_search values for the recall sweep")
    p.add_argument("--build-threads", type=int, default=2, help="hnswlib threads for inserts")
    p.add_argument("--exact-search-below", type=int, default=20000, help="LocalStore exact_search_below")
    p.add_argument("--candidates", type=int, default=100, help="hits per retriever before fusion (KB default)")
    p.add_argument("--queries", type=int, default=300, help="SciFact queries used on the synthetic store")
    p.add_argument("--filtered-sql-queries", type=int, default=30,
                   help="queries timed end to end with the filter (each runs the filter's SQL scan)")
    p.add_argument("--chunks-per-doc", type=int, default=8, help="mean chunks per synthetic document")
    p.add_argument("--batch-chunks", type=int, default=1000, help="chunks per LocalStore.apply call")
    p.add_argument("--noise", type=float, default=0.6, help="norm of the noise added to each base vector")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the synthetic store is written (default: a temp dir); it is deleted unless --keep")
    p.add_argument("--keep", action="store_true", help="keep the synthetic store")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "query_latency.json")
    return p.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- part 1


def scifact_latency(kb: KnowledgeBase, queries: list[str], k: int) -> dict[str, Any]:
    """Latency of kb.retrieve per mode (interleaved per query) and the p50/p95 of each stage."""
    for query in queries[:10]:  # warm-up: model, caches
        for mode in MODES:
            kb.retrieve(query, k, mode=mode)
    total: dict[str, list[float]] = {m: [] for m in MODES}
    stages: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    for query in queries:
        for mode in MODES:
            t = time.perf_counter()
            result = kb.retrieve(query, k, mode=mode)
            total[mode].append((time.perf_counter() - t) * 1000)
            for stage, ms in result.timings.items():
                if stage != "total":
                    stages[mode].setdefault(stage, []).append(ms)
    return {
        mode: {"latency_ms": percentiles(total[mode]),
               "stages_ms": {stage: percentiles(v) for stage, v in stages[mode].items()}}
        for mode in MODES
    }


def build_scifact_kb(data: Path, kb_dir: Path, threads: int) -> None:
    dataset = load_beir(data, "train")
    log(f"building a SciFact KB at {kb_dir} ({len(dataset.corpus)} documents) ...")
    with KnowledgeBase.open(kb_dir, create=True, num_threads=threads) as kb:
        report = kb.ingest_documents(corpus_documents(dataset, "scifact"), total=len(dataset.corpus))
    log(f"built: {report.chunks} chunks in {report.seconds:.0f}s")


def base_material(kb_dir: Path) -> tuple[list[str], np.ndarray]:
    """Texts and vectors of every chunk in the KB (its MiniLM embeddings)."""
    conn = sqlite3.connect(f"file:{kb_dir / DB_FILE}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT text, vector FROM chunks ORDER BY id").fetchall()
    finally:
        conn.close()
    texts = [r[0] for r in rows]
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return texts, vectors


# ---------------------------------------------------------------------------------------------- part 2


class SyntheticCorpus:
    """Generates chunks (text, BM25 tokens, vector, source_type) around real SciFact chunks."""

    def __init__(self, texts: list[str], vectors: np.ndarray, n: int, *, noise: float, chunks_per_doc: int,
                 seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.sentences: list[str] = []
        self.sentence_tokens: list[list[str]] = []
        self.chunk_sentences: list[np.ndarray] = []
        for text in texts:
            ids = []
            for sentence in _SENTENCE.split(text):
                if sentence.strip():
                    ids.append(len(self.sentences))
                    self.sentences.append(sentence.strip())
                    self.sentence_tokens.append(tokenize(sentence))
            self.chunk_sentences.append(np.asarray(ids or [0], dtype=np.int64))
        self.base_vectors = vectors
        self.n = n
        self.base = self.rng.integers(0, len(texts), size=n)
        self.vectors = self._vectors(noise)
        # Documents: consecutive runs of chunks, each with one source type.
        sizes = self.rng.integers(1, 2 * chunks_per_doc, size=n // chunks_per_doc * 2 + 10)
        ends = np.cumsum(sizes)
        last = int(np.searchsorted(ends, n))  # the document that reaches n chunks, cut to fit
        sizes[last] -= int(ends[last]) - n
        self.doc_sizes = sizes[: last + 1].tolist()
        self.doc_types = self.rng.choice(len(SOURCE_TYPES), size=len(self.doc_sizes), p=SOURCE_WEIGHTS)
        self.chunk_types = np.repeat(self.doc_types, self.doc_sizes)

    def _vectors(self, noise: float) -> np.ndarray:
        """base + noise with the real embeddings' covariance, scaled to norm ~``noise``, re-normalised."""
        base = self.base_vectors
        cov = np.cov(base, rowvar=False).astype(np.float64)
        eigvals, eigvecs = np.linalg.eigh(cov)
        shape = (eigvecs * np.sqrt(np.clip(eigvals, 0, None))).T.astype(np.float32)  # z @ shape ~ N(0, cov)
        scale = noise / np.sqrt(np.trace(cov))
        out = np.empty((self.n, base.shape[1]), dtype=np.float32)
        for start in range(0, self.n, 100_000):
            end = min(self.n, start + 100_000)
            z = self.rng.standard_normal((end - start, base.shape[1]), dtype=np.float32)
            block = base[self.base[start:end]] + scale * (z @ shape)
            out[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    def chunk_text(self, i: int) -> tuple[str, list[str]]:
        own = self.chunk_sentences[self.base[i]]
        keep = own[self.rng.random(len(own)) < 0.75]
        if len(keep) == 0:
            keep = own[:1]
        extra = int(self.rng.integers(0, len(self.sentences)))
        ids = np.insert(keep, int(self.rng.integers(0, len(keep) + 1)), extra)
        text = " ".join(self.sentences[j] for j in ids)
        tokens = list(itertools.chain.from_iterable(self.sentence_tokens[j] for j in ids))
        return text, tokens

    def batches(self, batch_chunks: int) -> Iterator[list[DocumentUpdate]]:
        """DocumentUpdates of whole documents, about ``batch_chunks`` chunks per batch, in chunk order."""
        batch: list[DocumentUpdate] = []
        in_batch = 0
        position = 0
        for d, (size, kind) in enumerate(zip(self.doc_sizes, self.doc_types, strict=True)):
            source_type = SOURCE_TYPES[kind]
            uri = f"synthetic://doc/{d}"
            chunks, tokens = [], []
            for i in range(position, position + size):
                text, toks = self.chunk_text(i)
                chunks.append(Chunk(text=text, start=0, end=len(text),
                                    meta=ChunkMeta(source=uri, source_type=source_type, word_count=len(toks))))
                tokens.append(toks)
            record = DocumentRecord(id=f"syn{d:08d}", uri=uri, source_type=source_type,
                                    content_hash=f"h{d}", size=sum(len(c.text) for c in chunks), version=1)
            batch.append(DocumentUpdate(record, chunks, self.vectors[position:position + size], tokens))
            position += size
            in_batch += size
            if in_batch >= batch_chunks:
                yield batch
                batch, in_batch = [], 0
        if batch:
            yield batch


@dataclass
class StoreConfig:
    directory: Path
    dim: int
    m: int
    ef_construction: int
    ef_search: int
    exact_below: int
    threads: int

    def open(self, create: bool = False) -> LocalStore:
        return LocalStore(self.directory, embedder_name="all-MiniLM-L6-v2", dim=self.dim, create=create,
                          hnsw_m=self.m, hnsw_ef_construction=self.ef_construction, hnsw_ef_search=self.ef_search,
                          exact_search_below=self.exact_below, threads=self.threads)


def _timed(method: Callable[..., Any], bucket: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            bucket[key] += time.perf_counter() - start
    return wrapper


def insert(store: LocalStore, corpus: SyntheticCorpus, batch_chunks: int) -> dict[str, Any]:
    """Write the corpus through LocalStore.apply, logging progress; time split into HNSW / BM25 / the rest."""
    split = {"hnsw_add": 0.0, "bm25_add": 0.0, "generate": 0.0}
    # Benchmark-only instrumentation of the store's private index objects (instance attributes, not src).
    store._dense.add = _timed(store._dense.add, split, "hnsw_add")  # type: ignore[method-assign]
    store._sparse.add = _timed(store._sparse.add, split, "bm25_add")  # type: ignore[method-assign]
    done, next_log = 0, 0
    step = max(corpus.n // 20, 1)
    batches = corpus.batches(batch_chunks)
    with Phase() as phase:
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            split["generate"] += time.perf_counter() - t
            if batch is None:
                break
            store.apply(batch)
            done += sum(len(u.chunks) for u in batch)
            if done >= next_log or done == corpus.n:
                elapsed = phase.elapsed() - split["generate"]
                rate = done / elapsed if elapsed else 0.0
                eta = (corpus.n - done) / rate if rate else 0.0
                log(f"inserted {done:>9,}/{corpus.n:,}  {rate:7.0f} chunks/s  eta {eta / 60:5.1f} min  "
                    f"hnsw {split['hnsw_add']:.0f}s bm25 {split['bm25_add']:.0f}s  rss {peak_rss_mib():.0f} MiB  "
                    f"load {loadavg()[0]}")
                next_log += step
    wall = phase.wall - split["generate"]
    return {
        "chunks": done, "documents": len(corpus.doc_sizes), "wall_s": round(wall, 2),
        "chunks_per_s": round(done / wall, 1), "cpu_s_incl_generation": round(phase.cpu, 2),
        "split_s": {"hnsw_add": round(split["hnsw_add"], 2), "bm25_add": round(split["bm25_add"], 2),
                    "sqlite_and_rest": round(wall - split["hnsw_add"] - split["bm25_add"], 2),
                    "generation_excluded": round(split["generate"], 2)},
        "batch_chunks": batch_chunks, "loadavg_after": loadavg(),
    }


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Exact inner-product top-k row indices (best first) for each query, optionally among ``mask`` rows."""
    rows = np.arange(len(vectors)) if mask is None else np.flatnonzero(mask)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(rows), 100_000):
        part = rows[start:start + 100_000]
        scores = queries @ vectors[part].T  # (q, part)
        kk = min(k, len(part))
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        all_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        all_rows = np.concatenate([best_rows, part[top]], axis=1)
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(all_scores, order, axis=1)
        best_rows = np.take_along_axis(all_rows, order, axis=1)
    return best_rows


def recall_at_k(found: list[np.ndarray], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))


def structure_stats(corpus: SyntheticCorpus, queries: np.ndarray, truth: np.ndarray, rng: np.random.Generator
                    ) -> dict[str, Any]:
    """Nearest-neighbour cosines of the synthetic set next to those of the real SciFact chunks it is made of."""
    def nn_cos(vectors: np.ndarray) -> float:
        sample = rng.choice(len(vectors), size=min(500, len(vectors)), replace=False)
        top = exact_topk(vectors, vectors[sample], 2)
        # The best match is the row itself unless it has an exact duplicate: take the best other row.
        other = np.where(top[:, 0] == sample, top[:, 1], top[:, 0])
        return round(float(np.mean(np.einsum("qd,qd->q", vectors[sample], vectors[other]))), 4)

    real, syn = corpus.base_vectors, corpus.vectors
    real_top = -np.sort(-(queries @ real.T), axis=1)[:, :10]
    syn_top = np.einsum("qd,qkd->qk", queries, syn[truth])  # exact top-10 rows, best first
    return {
        "real_chunks": len(real),
        "mean_top1_neighbour_cos": {"real": nn_cos(real), "synthetic": nn_cos(syn)},
        "mean_query_top1_cos": {"real": round(float(real_top[:, 0].mean()), 4),
                                "synthetic": round(float(syn_top[:, 0].mean()), 4)},
        "mean_query_top10_cos": {"real": round(float(real_top[:, 9].mean()), 4),
                                 "synthetic": round(float(syn_top[:, 9].mean()), 4)},
    }


def rows_of(hits: list[tuple[int, float]]) -> np.ndarray:
    """Chunk ids to rows of the corpus arrays: a fresh store numbers its chunks 1..N in insertion order."""
    return np.asarray([i for i, _ in hits], dtype=np.int64) - 1


def recall_sweep(store: LocalStore, qvecs: np.ndarray, truth: np.ndarray, truth_filtered: np.ndarray,
                 allowed: set[int], ef_values: list[int], k: int) -> list[dict[str, Any]]:
    """Recall@k and latency of dense search per ef_search, unfiltered (store.dense_search) and filtered.

    The filtered runs call the dense index with the allowed-id set computed once, so they time the ANN
    search alone; the filter's SQL scan, paid per query by store.dense_search(filter=...), is timed apart.
    """
    index = store._dense  # benchmark-only: ef_search is changed in place instead of reopening per value
    rows = []
    for ef in ef_values:
        index.ef_search = ef
        found, lat, found_f, lat_f = [], [], [], []
        for v in qvecs:
            t = time.perf_counter()
            hits = store.dense_search(v, k)
            lat.append((time.perf_counter() - t) * 1000)
            found.append(rows_of(hits))
        for v in qvecs:
            t = time.perf_counter()
            ids, _ = index.search(v, k, allowed)
            lat_f.append((time.perf_counter() - t) * 1000)
            found_f.append(ids.astype(np.int64) - 1)
        rows.append({
            "ef_search": ef,
            "unfiltered": {"recall_at_k": round(recall_at_k(found, truth), 4), "latency_ms": percentiles(lat)},
            "filtered_ann_only": {"recall_at_k": round(recall_at_k(found_f, truth_filtered), 4),
                                  "latency_ms": percentiles(lat_f)},
        })
        log(f"ef_search {ef:4d}: recall@{k} {rows[-1]['unfiltered']['recall_at_k']:.4f} "
            f"(filtered {rows[-1]['filtered_ann_only']['recall_at_k']:.4f}), "
            f"p50 {rows[-1]['unfiltered']['latency_ms']['p50']:.2f} ms "
            f"(filtered {rows[-1]['filtered_ann_only']['latency_ms']['p50']:.2f} ms)")
    return rows


def store_latency(store: LocalStore, texts: list[str], qvecs: np.ndarray, k: int, candidates: int,
                  truth: np.ndarray, filter: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sparse, dense and RRF-fused queries against the store, interleaved per query, as the retriever does
    them (``candidates`` from each retriever, fuse, fetch the top k), without query embedding."""
    total: dict[str, list[float]] = {m: [] for m in MODES}
    stages: dict[str, list[float]] = {"dense": [], "sparse": [], "fuse": [], "fetch": []}
    found = []
    for text, v in zip(texts, qvecs, strict=True):
        t = time.perf_counter()
        sparse = store.sparse_search(text, candidates, filter)
        store.get([i for i, _ in sparse[:k]])
        total["sparse"].append((time.perf_counter() - t) * 1000)

        t = time.perf_counter()
        dense = store.dense_search(v, candidates, filter)
        store.get([i for i, _ in dense[:k]])
        total["dense"].append((time.perf_counter() - t) * 1000)
        found.append(rows_of(dense))

        t0 = time.perf_counter()
        dense = store.dense_search(v, candidates, filter)
        t1 = time.perf_counter()
        sparse = store.sparse_search(text, candidates, filter)
        t2 = time.perf_counter()
        fused = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in sparse]])[:k]
        t3 = time.perf_counter()
        store.get([i for i, _ in fused])
        t4 = time.perf_counter()
        total["hybrid"].append((t4 - t0) * 1000)
        for name, a, b in (("dense", t0, t1), ("sparse", t1, t2), ("fuse", t2, t3), ("fetch", t3, t4)):
            stages[name].append((b - a) * 1000)
    return {
        "queries": len(texts), "filter": filter, "candidates": candidates, "k": k,
        "latency_ms": {m: percentiles(v) for m, v in total.items()},
        "hybrid_stages_ms": {name: percentiles(v) for name, v in stages.items()},
        "dense_recall_at_k_of_candidates_search": round(recall_at_k(found, truth), 4),
    }


def dir_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def synthetic(args: argparse.Namespace, base_texts: list[str], base_vectors: np.ndarray, queries: list[str],
              query_vectors: np.ndarray, checkpoint: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Part 2; ``checkpoint(partial)`` is called after each long phase so an interrupted run leaves numbers."""
    n, k = args.synthetic, args.k
    out: dict[str, Any] = {"chunks": n, "complete": False}
    log(f"generating {n:,} synthetic chunk vectors from {len(base_texts)} SciFact chunks ...")
    with Phase() as gen:
        corpus = SyntheticCorpus(base_texts, base_vectors, n, noise=args.noise, chunks_per_doc=args.chunks_per_doc,
                                 seed=args.seed)
    mask = corpus.chunk_types == SOURCE_TYPES.index(FILTER["source_type"])
    out["generation"] = {**gen.to_dict(), "noise_norm": args.noise, "mean_chunks_per_doc": args.chunks_per_doc,
                         "documents": len(corpus.doc_sizes), "filter": FILTER,
                         "filter_fraction": round(float(mask.mean()), 4),
                         "mean_tokens_per_chunk_sample": round(float(np.mean(
                             [len(corpus.chunk_text(i)[1]) for i in range(min(n, 2000))])), 1)}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ragtune-latency-bench-"))
    config = StoreConfig(workdir / "store", dim=base_vectors.shape[1], m=args.hnsw_m,
                         ef_construction=args.hnsw_ef_construction, ef_search=128,
                         exact_below=args.exact_search_below, threads=args.build_threads)
    if config.directory.exists():
        raise SystemExit(f"{config.directory} exists — give an empty --workdir")
    out["hnsw"] = {"m": args.hnsw_m, "ef_construction": args.hnsw_ef_construction,
                   "build_threads": args.build_threads, "exact_search_below": args.exact_search_below}
    try:
        store = config.open(create=True)
        log(f"inserting into {config.directory} (M={args.hnsw_m}, ef_construction={args.hnsw_ef_construction}, "
            f"{args.build_threads} build threads) ...")
        out["insert"] = insert(store, corpus, args.batch_chunks)
        checkpoint(out)
        with Phase() as save:
            store.close()
        out["close_save"] = save.to_dict()
        out["disk_mib"] = {"sqlite": dir_mib(config.directory) - dir_mib(config.directory / "index"),
                           "dense_index": dir_mib(config.directory / "index" / "dense"),
                           "sparse_index": dir_mib(config.directory / "index" / "sparse")}
        log(f"saved in {save.wall:.1f}s; reopening ...")
        with Phase() as opened:
            store = config.open()
        out["reopen"] = {**opened.to_dict(), "note": "page cache warm (files just written)"}
        log(f"reopened in {opened.wall:.2f}s")
        checkpoint(out)
        first, last, count = store._conn.execute("SELECT min(id), max(id), count(*) FROM chunks").fetchone()
        if (first, last, count) != (1, n, n):
            raise SystemExit(f"chunk ids are not 1..{n}: min {first} max {last} count {count}")

        rng = np.random.default_rng(args.seed + 1)
        picked = rng.choice(len(queries), size=min(args.queries, len(queries)), replace=False)
        texts, qvecs = [queries[i] for i in picked], query_vectors[picked]
        log(f"exact top-{k} for {len(texts)} queries (numpy) ...")
        with Phase() as exact:
            truth = exact_topk(corpus.vectors, qvecs, k)
            truth_filtered = exact_topk(corpus.vectors, qvecs, k, mask)
        out["exact_search_numpy"] = {**exact.to_dict(), "queries": len(texts), "note": "unfiltered + filtered"}
        out["structure"] = structure_stats(corpus, qvecs, truth, rng)
        log(f"structure: {out['structure']}")

        sql_ms = []
        for _ in range(5):
            t = time.perf_counter()
            allowed = store.allowed_ids(FILTER)
            sql_ms.append((time.perf_counter() - t) * 1000)
        if allowed != set((np.flatnonzero(mask) + 1).tolist()):
            raise SystemExit("the filter's allowed ids do not match the generated source types")
        out["filter_sql_ms"] = {**percentiles(sql_ms), "allowed": len(allowed)}
        log(f"filter SQL (allowed_ids): p50 {out['filter_sql_ms']['p50']:.0f} ms for {len(allowed):,} ids")

        ef_values = [int(x) for x in args.ef_search.split(",")]
        out["recall_sweep"] = recall_sweep(store, qvecs, truth, truth_filtered, allowed, ef_values, k)
        good = [r["ef_search"] for r in out["recall_sweep"] if r["unfiltered"]["recall_at_k"] >= 0.95]
        good_f = [r["ef_search"] for r in out["recall_sweep"] if r["filtered_ann_only"]["recall_at_k"] >= 0.95]
        chosen = min(good) if good else max(ef_values)
        out["ef_search_chosen"] = chosen
        out["ef_search_min_for_recall_095"] = {"unfiltered": min(good) if good else None,
                                               "filtered": min(good_f) if good_f else None}
        checkpoint(out)
        store._dense.ef_search = chosen
        log(f"latency at ef_search={chosen}, {args.candidates} candidates per retriever ...")
        out["latency"] = store_latency(store, texts, qvecs, k, args.candidates, truth)
        m = min(args.filtered_sql_queries, len(texts))
        log(f"filtered latency end to end ({m} queries) ...")
        out["latency_filtered"] = store_latency(store, texts[:m], qvecs[:m], k, args.candidates,
                                                truth_filtered[:m], FILTER)
        store.close()
        out["complete"] = True
    finally:
        if not args.keep:
            shutil.rmtree(workdir / "store", ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------- report


def show(result: dict[str, Any]) -> None:
    if "scifact" in result:
        sf = result["scifact"]
        print(f"\nSciFact KB ({sf['chunks']} chunks), {sf['queries']} queries, k={sf['k']}: latency ms")
        stage_names = ["embed", "dense", "sparse", "fuse", "fetch"]
        rows = []
        for mode in MODES:
            r = sf["modes"][mode]
            rows.append([mode, r["latency_ms"]["p50"], r["latency_ms"]["p95"],
                         *[r["stages_ms"].get(s, {}).get("p50", "") for s in stage_names]])
        print_table(rows, ["mode", "p50", "p95", *[f"{s} p50" for s in stage_names]])
    if "synthetic" in result:
        sy = result["synthetic"]
        ins = sy["insert"]
        print(f"\nsynthetic store: {sy['chunks']:,} chunks, HNSW M={sy['hnsw']['m']} "
              f"ef_construction={sy['hnsw']['ef_construction']}")
        split = ins["split_s"]
        print(f"insert {ins['wall_s']:.0f}s = {ins['chunks_per_s']:.0f} chunks/s (hnsw {split['hnsw_add']:.0f}s,"
              f" bm25 {split['bm25_add']:.0f}s, sqlite+rest {split['sqlite_and_rest']:.0f}s); "
              f"save {sy['close_save']['wall_s']:.1f}s; reopen {sy['reopen']['wall_s']:.2f}s; "
              f"filter SQL p50 {sy['filter_sql_ms']['p50']:.0f} ms")
        print(f"structure: {sy['structure']}")
        rows = [[r["ef_search"], r["unfiltered"]["recall_at_k"], r["unfiltered"]["latency_ms"]["p50"],
                 r["unfiltered"]["latency_ms"]["p95"], r["filtered_ann_only"]["recall_at_k"],
                 r["filtered_ann_only"]["latency_ms"]["p50"], r["filtered_ann_only"]["latency_ms"]["p95"]]
                for r in sy["recall_sweep"]]
        print()
        print_table(rows, ["ef_search", "recall@10", "p50 ms", "p95 ms", "filtered recall", "p50 ms", "p95 ms"])
        lat, latf = sy["latency"], sy["latency_filtered"]
        print(f"\nstore-level latency ms at ef_search={sy['ef_search_chosen']} ({lat['candidates']} candidates, "
              f"no query embedding); filtered = with {FILTER} end to end ({latf['queries']} queries)")
        rows = [[m, lat["latency_ms"][m]["p50"], lat["latency_ms"][m]["p95"], latf["latency_ms"][m]["p50"],
                 latf["latency_ms"][m]["p95"]] for m in MODES]
        print_table(rows, ["mode", "p50", "p95", "filtered p50", "filtered p95"])
    print(f"\nload average start {result['loadavg_start']} end {result['loadavg_end']}; "
          f"peak RSS {result['peak_rss_mib']} MiB")


def main() -> None:
    args = parse_args()
    result: dict[str, Any] = {"benchmark": "query_latency", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "loadavg_start": loadavg(), "args": {k: str(v) for k, v in vars(args).items()}}
    tmp = None
    kb_dir = args.kb
    if kb_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="ragtune-scifact-kb-"))
        kb_dir = tmp / "kb"
        build_scifact_kb(args.data, kb_dir, args.threads)
    try:
        queries = list(load_beir(args.data, "train").queries.values())
        if not args.skip_scifact:
            with KnowledgeBase.open(kb_dir, num_threads=args.threads) as kb:
                log(f"SciFact: {len(queries)} queries x {len(MODES)} modes ...")
                with Phase() as phase:
                    modes = scifact_latency(kb, queries, args.k)
                result["scifact"] = {"kb": str(kb_dir), "chunks": kb.stats()["chunks"], "queries": len(queries),
                                     "k": args.k, "candidates": kb.settings.candidates, "modes": modes,
                                     "phase": phase.to_dict()}
        # The KB is only read from here on (another process may still be writing it).
        stored = LocalStore.stored_embedder(kb_dir)
        if stored is None:
            raise SystemExit(f"no knowledge base at {kb_dir}")
        query_vectors = load_embedder(stored[0], num_threads=args.threads).encode_queries(queries)
        result["machine"] = machine()  # after the embedder set torch's thread count
        base_texts, base_vectors = base_material(kb_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.synthetic > 0:
        def checkpoint(partial: dict[str, Any]) -> None:
            write_json(args.out, {**result, "synthetic": partial, "peak_rss_mib": peak_rss_mib(),
                                  "loadavg_now": loadavg()})

        checkpoint({"chunks": args.synthetic, "complete": False})
        result["synthetic"] = synthetic(args, base_texts, base_vectors, queries, query_vectors, checkpoint)
    result["peak_rss_mib"] = peak_rss_mib()
    result["loadavg_end"] = loadavg()
    show(result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
