"""Hybrid retrieval + a cross-encoder reranker on SciFact held-out train queries, over ``rerank_fusion``.

The reranker caches its scores, so every value after the first costs no model calls; the first run's
rerank stage gives the reranking throughput on this CPU.

    .venv/bin/python bench/rerank_sweep.py --kb /tmp/evals/scifact_256 --model runs/reranker-scifact-ict \\
        --query-ids runs/reranker-scifact/heldout_queries.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, write_json  # noqa: E402

from ragtune.evaluate.retrieval import evaluate_beir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--kb", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--query-ids", type=Path, required=True)
    ap.add_argument("--fusion", type=float, action="append")
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "scifact_heldout_rerank_sweep.json")
    args = ap.parse_args()
    ids = args.query_ids.read_text().split()
    rows = {}
    for fusion in args.fusion or [0.0, 0.5, 1.0, 2.0]:
        t = time.perf_counter()
        result = evaluate_beir(args.beir, args.kb, split="train", modes=["hybrid"],
                               reranks=[f"cross-encoder:{args.model}"], query_ids=ids, rerank_fusion=fusion,
                               rerank_candidates=args.candidates)
        for label, row in result["modes"].items():
            key = label if "rerank" not in label else f"{label} fusion={fusion:g}"
            rows[key] = row
            m = row["metrics"]
            print(f"{key:55s} nDCG@10 {m['ndcg_cut_10']:.4f}  R@100 {m['recall_100']:.4f}  "
                  f"p50 {row['latency_ms']['p50']:.0f} ms  ({time.perf_counter() - t:.0f} s)")
    first = next(r for k, r in rows.items() if "rerank" in k)
    rerank_ms = first["stages_ms"]["rerank"]
    write_json(args.out, {
        "what": "hybrid + trained cross-encoder on SciFact held-out train queries",
        "queries": len(ids), "model": str(args.model), "rerank_candidates": args.candidates,
        "machine": machine(), "loadavg": loadavg(), "rows": rows,
        "rerank_pairs_per_second": {k: round(args.candidates / (v / 1000), 1) for k, v in rerank_ms.items()},
    })


if __name__ == "__main__":
    main()
