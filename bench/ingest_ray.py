"""Ingestion on a local two-worker Ray cluster against a local ingest of the same files: the same documents,
chunks and vectors, and the throughput of each worker.

SciFact abstracts written as text files (title, blank line, abstract) are ingested once by the ordinary
single-process ingest and once by ``ray_ingest`` with two actors (one CPU and one thread each), into two fresh
KBs; then every document, chunk (text, offsets, metadata, BM25 tokens) and vector is compared.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/ingest_ray.py --docs 600
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, Phase, default_scifact_dir, git_state, loadavg, machine, write_json  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.ingest_ray import ray_ingest  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402


def contents(kb: KnowledgeBase) -> tuple[list[tuple], dict[str, tuple], dict[str, np.ndarray]]:
    store = kb.store
    docs = [(d.id, d.uri, d.status, d.duplicate_of, d.chunk_count, d.content_hash, d.version, d.metadata)
            for d in store.documents()]
    chunks, vectors = {}, {}
    for update in store.export([d.id for d in store.documents()]):
        for chunk, vector, tokens in zip(update.chunks, update.vectors, update.tokens or [], strict=True):
            chunks[chunk.id] = (chunk.text, chunk.start, chunk.end, chunk.meta.model_dump(), tokens)
            vectors[chunk.id] = vector
    return docs, chunks, vectors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "ingest_ray.json")
    args = p.parse_args()
    import ray

    work = Path(tempfile.mkdtemp(prefix="ragtune-ray-bench-"))
    result: dict[str, Any] = {"benchmark": "ingest_ray", "git": git_state(), "loadavg_start": loadavg(),
                              "docs": args.docs, "workers": args.workers}
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        dataset = load_beir(default_scifact_dir(), "train")
        for doc_id, entry in list(dataset.corpus.items())[: args.docs]:
            (corpus / f"{doc_id}.txt").write_text(f"{entry.get('title', '')}\n\n{entry.get('text', '')}\n")
        with KnowledgeBase.open(work / "local", create=True, num_threads=1) as local:
            with Phase() as phase:
                report = local.ingest(corpus)
            result["local"] = {"chunks": report.chunks, "files": len(report.added), "phase": phase.to_dict(),
                               "chunks_per_s": round(report.chunks / phase.wall, 2)}
            print(f"local: {report.chunks} chunks in {phase.wall:.1f}s", flush=True)
            with Phase() as phase:
                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            result["ray_start"] = phase.to_dict()
            with KnowledgeBase.open(work / "ray", create=True, num_threads=1) as distributed:
                with Phase() as phase:
                    got, workers = ray_ingest(distributed.store, distributed.settings, [corpus],
                                              workers=args.workers)
                result["ray"] = {"chunks": got.chunks, "files": len(got.added), "phase": phase.to_dict(),
                                 "chunks_per_s": round(got.chunks / phase.wall, 2), "workers": workers,
                                 "note": "wall time includes each actor loading the embedder"}
                print(f"ray: {got.chunks} chunks in {phase.wall:.1f}s; workers {workers}", flush=True)
                a, b = contents(local), contents(distributed)
                diffs = [float(np.abs(a[2][k] - b[2][k]).max()) for k in a[2]]
                result["identical"] = {
                    "documents": a[0] == b[0], "chunks": a[1] == b[1], "chunk_count": len(a[1]),
                    "vectors_max_abs_diff": max(diffs), "vectors_bitwise_equal": sum(d == 0.0 for d in diffs),
                    "report_equal": {k: v for k, v in report.to_dict().items() if k not in ("seconds",)}
                    == {k: v for k, v in got.to_dict().items() if k not in ("seconds",)},
                }
                print(result["identical"], flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"] = machine()
    result["loadavg_end"] = loadavg()
    write_json(args.out, result)


if __name__ == "__main__":
    main()
