"""SciFact (train split) retrieval quality and latency with the same knowledge base in every store, side by side,
and the `kb migrate` round trip local → Postgres → local.

The local KB is built once (``ragtune eval retrieval scifact --kb DIR``); the Postgres and Milvus copies are made
from it with ``kb migrate`` (no re-embedding). All three are then queried in one run, query by query in turn
(so load changes hit them alike), with ``eval retrieval``'s settings: 200 chunks per query folded into documents,
nDCG@10 / Recall@10/100 / MRR@10 with pytrec_eval's semantics, per-query latency including query embedding.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/store_scifact.py --local-kb /path/to/scifact_kb
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS_DIR,
    Phase,
    default_scifact_dir,
    git_state,
    loadavg,
    percentiles,
    print_table,
    write_json,
)
from _engines import milvus, postgres  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.ir import DEFAULT_METRICS, evaluate  # noqa: E402
from ragtune.evaluate.retrieval import CHUNK_DEPTH  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.migrate import migrate  # noqa: E402

MODES = ("dense", "hybrid", "sparse")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def documents(hits: list[Any], prefix: str) -> dict[str, float]:
    """Chunks folded into the first 100 documents, scored by rank (as eval retrieval does)."""
    ranked: dict[str, float] = {}
    for hit in hits:
        doc = hit.source.removeprefix(prefix)
        if doc not in ranked and len(ranked) < 100:
            ranked[doc] = 1.0 / (len(ranked) + 1)
    return ranked


def snapshot(kb: KnowledgeBase) -> tuple[list[tuple], dict[tuple[str, int], tuple]]:
    store = kb.store
    docs = [(d.id, d.uri, d.status, d.chunk_count, d.content_hash, d.version, d.title, d.metadata)
            for d in store.documents()]
    chunks = {}
    ids = [d.id for d in store.documents()]
    for start in range(0, len(ids), 500):
        for update in store.export(ids[start:start + 500]):
            for chunk, vector, tokens in zip(update.chunks, update.vectors, update.tokens or [], strict=True):
                chunks[(update.record.id, chunk.meta.chunk_index)] = (chunk.text, chunk.start, chunk.end,
                                                                      chunk.meta.model_dump(), tokens, vector.tobytes())
    return docs, chunks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--local-kb", type=Path, required=True)
    p.add_argument("--data", type=Path, default=RESULTS_DIR.parent / ".store-scifact", help="engines' data and copies")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")
    p.add_argument("--roundtrip-queries", type=int, default=100, help="queries whose top 10 the round trip compares")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "store_scifact.json")
    args = p.parse_args()
    beir = default_scifact_dir()
    dataset = load_beir(beir, "train")
    queries = dict(list(dataset.queries.items())[: args.limit] if args.limit else dataset.queries)
    qrels = {q: dataset.qrels[q] for q in queries}
    prefix = f"beir:{beir.resolve().name}/"
    result: dict[str, Any] = {"benchmark": "store_scifact", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "git": git_state(), "loadavg_start": loadavg(), "queries": len(queries),
                              "chunk_depth": CHUNK_DEPTH}
    if not args.keep:  # copies from an earlier run point at engines that are gone
        shutil.rmtree(args.data, ignore_errors=True)
    args.data.mkdir(parents=True, exist_ok=True)
    with postgres(args.data / "pg", keep=args.keep, settings={"jit": "off"}) as pg_url, \
            milvus(args.data / "milvus", keep=args.keep) as milvus_url:
        copies = {"postgres": (pg_url, args.data / "kb-postgres"), "milvus": (milvus_url, args.data / "kb-milvus")}
        result["migrate"] = {}
        for kind, (url, out) in copies.items():
            log(f"migrate local → {kind} ...")
            with Phase() as phase:
                report = migrate(args.local_kb, url, out=out, name="scifact-train")
            result["migrate"][f"local_to_{kind}"] = {**report.to_dict(), "phase": phase.to_dict()}
            assert report.ok, report.problems
        log("migrate postgres → local (round trip) ...")
        back = args.data / "kb-roundtrip"
        with Phase() as phase:
            report = migrate(copies["postgres"][1], "local", out=back)
        result["migrate"]["postgres_to_local"] = {**report.to_dict(), "phase": phase.to_dict()}

        kbs = {"local": KnowledgeBase.open(args.local_kb), "postgres": KnowledgeBase.open(copies["postgres"][1]),
               "milvus": KnowledgeBase.open(copies["milvus"][1])}
        try:
            roundtrip = KnowledgeBase.open(back)
            try:
                log("comparing the round trip ...")
                a, b = snapshot(kbs["local"]), snapshot(roundtrip)
                same_top10 = 0
                sample = list(queries.values())[: args.roundtrip_queries]
                for text in sample:
                    same_top10 += all(
                        [h.chunk_id for h in kbs["local"].search(text, 10, mode=m)]
                        == [h.chunk_id for h in roundtrip.search(text, 10, mode=m)] for m in MODES)
                result["roundtrip"] = {
                    "documents_identical": a[0] == b[0], "documents": len(a[0]),
                    "chunks_identical": a[1] == b[1], "chunks": len(a[1]),
                    "queries_with_identical_top10_in_every_mode": same_top10, "queries_compared": len(sample),
                    "modes": list(MODES),
                }
                log(f"round trip: {result['roundtrip']}")
            finally:
                roundtrip.close()

            log(f"{len(queries)} queries x {len(kbs)} stores x {len(MODES)} modes ...")
            runs: dict[str, dict[str, dict[str, dict[str, float]]]] = {k: {m: {} for m in MODES} for k in kbs}
            latency: dict[str, dict[str, list[float]]] = {k: {m: [] for m in MODES} for k in kbs}
            stages: dict[str, dict[str, dict[str, list[float]]]] = {k: {m: {} for m in MODES} for k in kbs}
            for kb in kbs.values():  # warm-up: models, caches, connections
                for mode in MODES:
                    kb.retrieve("warm up", CHUNK_DEPTH, mode=mode, candidates=CHUNK_DEPTH)
            with Phase() as phase:
                for n, (qid, text) in enumerate(queries.items()):
                    for mode in MODES:
                        for name, kb in kbs.items():
                            t = time.perf_counter()
                            found = kb.retrieve(text, CHUNK_DEPTH, mode=mode, candidates=CHUNK_DEPTH)
                            latency[name][mode].append((time.perf_counter() - t) * 1000)
                            for stage, ms in found.timings.items():
                                stages[name][mode].setdefault(stage, []).append(ms)
                            runs[name][mode][qid] = documents(found.hits, prefix)
                    if n % 100 == 0:
                        log(f"query {n}/{len(queries)} load {loadavg()[0]}")
            result["query_phase"] = phase.to_dict()
        finally:
            for kb in kbs.values():
                kb.close()
    table = []
    result["stores"] = {}
    for name in runs:
        result["stores"][name] = {}
        for mode in MODES:
            metrics = {k: round(v, 4) for k, v in evaluate(runs[name][mode], qrels, DEFAULT_METRICS).items()}
            result["stores"][name][mode] = {
                "metrics": metrics, "latency_ms": percentiles(latency[name][mode]),
                "stages_ms": {s: percentiles(v) for s, v in stages[name][mode].items()},
            }
    for name in runs:
        for mode in MODES:
            row = result["stores"][name][mode]
            delta = row["metrics"]["ndcg_cut_10"] - result["stores"]["local"][mode]["metrics"]["ndcg_cut_10"]
            row["ndcg_cut_10_minus_local"] = round(delta, 4)
            table.append([name, mode, row["metrics"]["ndcg_cut_10"], f"{delta:+.4f}", row["metrics"]["recall_100"],
                          row["latency_ms"]["p50"], row["latency_ms"]["p95"]])
    result["within_0.005_of_local"] = all(abs(result["stores"][n][m]["ndcg_cut_10_minus_local"]) <= 0.005
                                          for n in runs for m in ("dense", "hybrid"))
    result["loadavg_end"] = loadavg()
    print_table(table, ["store", "mode", "nDCG@10", "vs local", "R@100", "p50 ms", "p95 ms"])
    write_json(args.out, result)


if __name__ == "__main__":
    main()
