"""Embedding speed and agreement per backend and precision: torch fp32, ONNX fp32, ONNX int8 (per channel), and on
a CPU with AMX the bf16 document encoding that 'auto' picks there (queries on ONNX fp32).

On a seeded sample of SciFact chunk texts (title + abstract, truncated by the model at 256 tokens) and queries:
documents per second and milliseconds per query (one at a time, as a search embeds it), wall and CPU time of
this process on one thread, and each backend's cosine to torch's vectors. The machine is shared, so CPU seconds
are the steadier measure; the load average is recorded.

    OMP_NUM_THREADS=1 .venv/bin/python bench/embed_speed.py [--docs 128 --queries 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, cpu_seconds, default_scifact_dir, loadavg, machine, percentiles, write_json  # noqa: E402

from ragtune.embed import load_embedder  # noqa: E402
from ragtune.embed.bf16 import BF16_MIN_TEXTS  # noqa: E402
from ragtune.embed.cpu import cpu_has_amx_bf16  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "embed_speed.json")
    args = ap.parse_args()
    rows = [json.loads(line) for line in (args.beir / "corpus.jsonl").open()]
    docs = [f"{r['title']}\n{r['text']}" for r in random.Random(0).sample(rows, args.docs)]
    queries = [json.loads(line)["text"] for line in (args.beir / "queries.jsonl").open()][: args.queries]
    results = {}
    reference: dict[str, np.ndarray] = {}
    variants = [("torch fp32", "torch", "fp32", False), ("onnx fp32", "onnx", "fp32", False),
                ("onnx int8", "onnx", "int8", False)]
    if cpu_has_amx_bf16():
        # What 'auto' runs on this CPU: documents in bf16 (torch, AMX), queries on ONNX fp32.
        variants.append(("bf16 documents (AMX), onnx fp32 queries", "onnx", "fp32", True))
    for label, backend, precision, bf16 in variants:
        os.environ["RAGTUNE_CPU_BF16"] = "1" if bf16 else "0"
        embedder = load_embedder("all-MiniLM-L6-v2", backend=backend, precision=precision, num_threads=1)
        described = embedder.describe() if hasattr(embedder, "describe") else {}
        assert ("documents" in described) is bf16, described
        embedder.encode_documents(docs[: BF16_MIN_TEXTS if bf16 else 4])  # bf16: loads the torch model
        embedder.encode_queries(queries[:4])
        wall, cpu = time.perf_counter(), cpu_seconds()
        vectors = embedder.encode_documents(docs)
        doc_wall, doc_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        latencies, query_vectors = [], []
        cpu = cpu_seconds()
        for q in queries:
            t = time.perf_counter()
            query_vectors.append(embedder.encode_queries([q])[0])
            latencies.append((time.perf_counter() - t) * 1000)
        query_cpu_ms = (cpu_seconds() - cpu) / len(queries) * 1000
        if not reference:
            reference = {"docs": vectors, "queries": np.vstack(query_vectors)}
        doc_cos = np.sum(vectors * reference["docs"], axis=1)
        query_cos = np.sum(np.vstack(query_vectors) * reference["queries"], axis=1)
        results[label] = {
            "docs_per_s_wall": round(len(docs) / doc_wall, 2), "doc_cpu_ms": round(doc_cpu / len(docs) * 1000, 2),
            "query_ms": percentiles(latencies), "query_cpu_ms": round(query_cpu_ms, 2),
            "cosine_to_torch": {"docs_mean": round(float(doc_cos.mean()), 5),
                                "docs_min": round(float(doc_cos.min()), 5),
                                "queries_mean": round(float(query_cos.mean()), 5),
                                "queries_min": round(float(query_cos.min()), 5)},
            "loadavg": loadavg(),
        }
        print(label, json.dumps(results[label]), flush=True)
    base = results["torch fp32"]
    speedups = {label: {"docs_cpu": round(base["doc_cpu_ms"] / r["doc_cpu_ms"], 2),
                        "query_cpu": round(base["query_cpu_ms"] / r["query_cpu_ms"], 2)}
                for label, r in results.items()}
    write_json(args.out, {"what": "all-MiniLM-L6-v2 on one thread: SciFact abstracts and queries",
                          "docs": len(docs), "queries": len(queries), "results": results,
                          "speedup_vs_torch": speedups, "machine": machine()})


if __name__ == "__main__":
    main()
