"""Cross-encoder reranking latency per query: torch fp32 beside ONNX fp32 and int8, over candidate counts and lengths.

The model is a MiniLM-L6 cross-encoder of the shape ``ragtune train reranker`` makes (the bundled MiniLM with a
one-logit head, seeded); its weights do not change the cost, so this measures what the trained reranker costs
on this CPU. Candidates are SciFact abstracts (title + text), as hybrid retrieval returns them; scores are not
cached between configurations (each reranker is new). One thread.

    OMP_NUM_THREADS=1 .venv/bin/python bench/rerank_latency.py [--queries 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, cpu_seconds, default_scifact_dir, loadavg, machine, percentiles, write_json  # noqa: E402

VARIANTS = ((50, 384), (50, 256), (20, 256), (20, 128), (10, 256))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "rerank_latency.json")
    args = ap.parse_args()
    import torch
    from sentence_transformers import CrossEncoder

    from ragtune.embed.sentence_transformers import resolve_model
    from ragtune.retrieve.rerank import CrossEncoderReranker

    rows = [json.loads(line) for line in (args.beir / "corpus.jsonl").open()]
    passages = [f"{r['title']}\n{r['text']}" for r in rows]
    queries = [json.loads(line)["text"] for line in (args.beir / "queries.jsonl").open()][: args.queries]
    rng = random.Random(0)
    candidates = [rng.sample(passages, max(n for n, _ in VARIANTS)) for _ in queries]
    work = Path(tempfile.mkdtemp(prefix="rerank-latency-"))
    os.environ["RAGTUNE_MODEL_CACHE"] = str(work / "cache")
    torch.manual_seed(0)
    CrossEncoder(resolve_model("all-MiniLM-L6-v2"), num_labels=1, max_length=512).save(str(work / "ce"))
    results: dict[str, dict[str, object]] = {}
    for backend, precision in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")):
        for n, length in VARIANTS:
            reranker = CrossEncoderReranker(work / "ce", max_length=length, backend=backend, precision=precision,
                                            num_threads=1, batch_size=16)
            reranker.score("warm up", candidates[0][:2])
            latencies = []
            cpu = cpu_seconds()
            for query, texts in zip(queries, candidates, strict=True):
                t = time.perf_counter()
                reranker.score(query, texts[:n])
                latencies.append((time.perf_counter() - t) * 1000)
            label = f"{backend} {precision}, {n} candidates x {length} tokens"
            results[label] = {"backend": backend, "precision": precision, "candidates": n, "max_length": length,
                              "latency_ms": percentiles(latencies),
                              "cpu_ms_per_query": round((cpu_seconds() - cpu) / len(queries) * 1000, 1),
                              "loadavg": loadavg()}
            print(label, results[label]["latency_ms"], results[label]["cpu_ms_per_query"], flush=True)
    write_json(args.out, {"what": "cross-encoder (MiniLM-L6, one logit) rerank latency per query on SciFact "
                                  "abstracts, one thread", "queries": len(queries), "results": results,
                          "machine": machine()})


if __name__ == "__main__":
    main()
