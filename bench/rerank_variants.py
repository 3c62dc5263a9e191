"""What a trained cross-encoder's gain costs per query, variant by variant, on SciFact's held-out train queries.

One table: hybrid retrieval alone, hybrid + the cross-encoder (torch fp32 and ONNX fp32 / int8, over candidate
counts and lengths), and hybrid over a KB re-embedded with an embedder distilled from that cross-encoder
(``bench/train_embedder.py train --variant distilled``: MarginMSE, no reranker at query time). For each: nDCG@10
and Recall@100 on the 152 held-out queries of the shared split (never trained on, never used for a choice), the
whole query's latency p50/p95 (retrieval + reranking), the rerank stage's p50 and the CPU time per query. One
thread; the rerank fusion weight is the KB default. Run after ``bench/train_reranker.py`` and
``bench/train_embedder.py`` (the same split):

    OMP_NUM_THREADS=1 .venv/bin/python bench/rerank_variants.py --kb /tmp/evals/scifact_256 \\
        --teacher runs/reranker-scifact/lr5e-05 --distilled-kb /tmp/evals/scifact_256_embedder-scifact_distilled
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS_DIR,
    cpu_seconds,
    default_scifact_dir,
    loadavg,
    machine,
    print_table,
    write_json,
)

# (backend, precision, candidates, max_length): the trained reranker's measured setting first, then cheaper ones.
RERANKS = (("torch", "fp32", 50, 256), ("onnx", "fp32", 50, 256), ("onnx", "int8", 50, 256),
           ("onnx", "int8", 20, 256), ("onnx", "int8", 20, 128), ("onnx", "int8", 10, 256))


def measure(beir: Path, kb: Path, heldout: list[str], rerank: str | None = None, **overrides: Any) -> dict[str, Any]:
    from ragtune.evaluate.retrieval import evaluate_beir
    from ragtune.kb import _shared_cross_encoder

    # A fresh cross-encoder, so no variant reads scores another one cached (the same pairs at the same length).
    _shared_cross_encoder.cache_clear()

    cpu, started = cpu_seconds(), time.perf_counter()
    report = evaluate_beir(beir, kb, split="train", modes=("hybrid",), reranks=[rerank] if rerank else [],
                           query_ids=heldout, num_threads=1, **overrides)
    configs = report["modes"]
    chosen = configs[next(label for label in configs if (rerank is None) == (configs[label]["rerank"] == "none"))]
    # evaluate_beir runs plain hybrid first, then the reranked configuration: CPU time is for the whole call.
    return {"ndcg@10": chosen["metrics"]["ndcg_cut_10"], "recall@100": chosen["metrics"]["recall_100"],
            "latency_ms": chosen["latency_ms"], "rerank_ms": chosen["stages_ms"].get("rerank"),
            "cpu_ms_per_query_all_configs": round((cpu_seconds() - cpu) / len(heldout) * 1000, 1),
            "seconds": round(time.perf_counter() - started, 1), "loadavg": loadavg(), "settings": overrides}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--kb", type=Path, required=True, help="KB of the corpus with the bundled embedder")
    ap.add_argument("--teacher", type=Path, required=True, help="the trained cross-encoder")
    ap.add_argument("--distilled-kb", type=Path, default=None, help="the KB re-embedded with the distilled embedder")
    ap.add_argument("--split-dir", type=Path, default=Path("runs/embedder-scifact"),
                    help="where heldout_queries.txt is (bench/train_embedder.py prepare)")
    ap.add_argument("--only", action="append", default=[],
                    help="measure only the cross-encoder variants whose label holds this text (repeatable); the "
                         "others keep their numbers from --out")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "rerank_variants.json")
    args = ap.parse_args()
    heldout = (args.split_dir / "heldout_queries.txt").read_text().split()
    previous = json.loads(args.out.read_text())["results"] if args.only and args.out.exists() else {}
    results: dict[str, Any] = {"hybrid (bundled embedder)": measure(args.beir, args.kb, heldout)}
    print("hybrid", results["hybrid (bundled embedder)"], flush=True)
    for backend, precision, candidates, length in RERANKS:
        label = f"+ cross-encoder {backend} {precision}, {candidates} x {length} tokens"
        if args.only and not any(text in label for text in args.only):
            if label in previous:
                results[label] = previous[label]
            continue
        results[label] = measure(args.beir, args.kb, heldout, f"cross-encoder:{args.teacher.resolve()}",
                                 rerank_backend=backend, rerank_precision=precision, rerank_candidates=candidates,
                                 rerank_max_length=length)
        print(label, results[label], flush=True)
    if args.distilled_kb is not None:
        results["hybrid (distilled embedder, no reranker)"] = measure(args.beir, args.distilled_kb, heldout)
    rows = [[label, r["ndcg@10"], r["recall@100"], r["latency_ms"]["p50"], r["latency_ms"]["p95"],
             (r["rerank_ms"] or {}).get("p50", "")] for label, r in results.items()]
    print_table(rows, ["variant", "nDCG@10", "R@100", "p50 ms", "p95 ms", "rerank p50 ms"])
    write_json(args.out, {"what": "SciFact held-out train queries: hybrid, hybrid + trained cross-encoder variants, "
                                  "hybrid over the distilled embedder; one thread", "queries": len(heldout),
                          "teacher": str(args.teacher), "results": results, "machine": machine()})


if __name__ == "__main__":
    main()
