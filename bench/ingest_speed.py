"""Ingestion throughput: the whole pipeline against the embedder alone, on the SciFact corpus.

1. Ingest the SciFact corpus (5,183 abstracts) into a fresh knowledge base with the default settings
   (bundled all-MiniLM-L6-v2, recursive 256-token chunks) and time it: docs/s and chunks/s.
2. Read back exactly the chunk texts that ended up in the knowledge base (``SELECT text FROM chunks``) and
   time ``kb.embedder.encode_documents`` on them, same model, same batch size, same threads. The ratio
   pipeline/embedder-only says how much the rest of the pipeline (chunking, tokenising, SQLite, HNSW,
   BM25, saving) costs on top of the embedding that dominates it. Target: >= 0.80.
   The embedder is also timed on the same texts in the groups the pipeline flushes (documents gathered
   until >= 4 embedding batches of chunks), because one call over every text sorts them all by length and pads
   less than the pipeline's smaller calls can.
3. Ingest the same documents again: every one is unchanged, so this should take a small fraction.

The machine may be shared: the JSON records the load average at the start and end and after each phase,
and the CPU seconds of this process next to the wall time (contention inflates wall time, hardly CPU
time). The phases compared run back to back; with ``--slices K`` they alternate over K slices of the
corpus (ingest slice i, then embed its stored chunks alone), so a change of load hits both alike.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/ingest_speed.py [--threads 1] [--limit N] [--slices K] [--kb DIR]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sqlite3
import sys
import tempfile
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
    loadavg,
    machine,
    peak_rss_mib,
    print_table,
    write_json,
)

import ragtune.ingest  # noqa: E402
from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.retrieval import corpus_documents  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.store.local import DB_FILE  # noqa: E402
from ragtune.types import Document  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_scifact_dir(), help="BEIR SciFact folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (also the KB's num_threads)")
    parser.add_argument("--limit", type=int, default=None, help="ingest only the first N documents")
    parser.add_argument("--kb", type=Path, default=None,
                        help="build the KB here and keep it (must not exist); default: a temporary directory")
    parser.add_argument("--slices", type=int, default=1,
                        help="alternate pipeline and embedder-alone over this many slices of the corpus (a shared "
                             "machine's load then hits both alike); 1 = one ingest call for the whole corpus")
    parser.add_argument("--no-grouped", action="store_true",
                        help="skip timing the embedder in the pipeline's flush groups")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "ingest_speed.json")
    return parser.parse_args()


def load_documents(data: Path, limit: int | None) -> list[tuple[str, Document]]:
    """The SciFact corpus as (uri, Document), built before timing so the BEIR loader is not measured."""
    dataset = load_beir(data, "train")
    return list(itertools.islice(corpus_documents(dataset, "scifact"), limit))


def stored_chunks(kb_dir: Path, after: int = 0) -> list[tuple[int, str, str]]:
    """(chunk id, document id, text) of the chunks in the KB with id > ``after``, in insertion order."""
    conn = sqlite3.connect(f"file:{kb_dir / DB_FILE}?mode=ro", uri=True)
    try:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT id, document_id, text FROM chunks WHERE id > ? ORDER BY id", (after,))]
    finally:
        conn.close()


def flush_size(embed_batch_size: int) -> int:
    """Chunks the Ingestor gathers before one embedding call (FLUSH_BATCHES batches; older code: FLUSH_CHUNKS)."""
    batches = getattr(ragtune.ingest, "FLUSH_BATCHES", None)
    return batches * embed_batch_size if batches else int(getattr(ragtune.ingest, "FLUSH_CHUNKS", 256))


def flush_groups(chunks: list[tuple[int, str, str]], size: int) -> list[list[str]]:
    """Texts grouped as the Ingestor flushes them: whole documents until a group holds >= ``size``."""
    groups: list[list[str]] = []
    current: list[str] = []
    for _, doc_chunks in itertools.groupby(chunks, key=lambda c: c[1]):
        current.extend(text for _, _, text in doc_chunks)
        if len(current) >= size:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


class Totals:
    """Wall and CPU seconds summed over slices."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def add(self, phase: Phase) -> None:
        self.wall += phase.wall
        self.cpu += phase.cpu

    def to_dict(self, chunks: int) -> dict[str, Any]:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3), "chunks": chunks,
                "chunks_per_s": rate(chunks, self.wall), "cpu_ms_per_chunk": round(1000 * self.cpu / chunks, 2)}


def measure(args: argparse.Namespace, kb: KnowledgeBase, kb_dir: Path, docs: list[tuple[str, Document]],
            result: dict[str, Any]) -> None:
    """Pipeline and embedder-alone phases, alternating slice by slice (``--slices``) so that a change in
    the machine's load falls on both alike; with one slice the whole corpus is ingested in one call."""
    k = max(1, min(args.slices, len(docs)))
    parts = [docs[i * len(docs) // k:(i + 1) * len(docs) // k] for i in range(k)]
    pipe, alone, grouped = Totals(), Totals(), Totals()
    per_slice: list[dict[str, Any]] = []
    counts = {"added": 0, "duplicates": 0, "failed": 0, "chunks": 0, "calls": 0}
    last_id = 0
    for i, part in enumerate(parts):
        with Phase() as p:
            report = kb.ingest_documents(iter(part), total=len(part))
        if not report.ok:
            raise SystemExit(f"ingest failed: {report.failed[:3]}")
        chunks = stored_chunks(kb_dir, after=last_id)
        last_id = chunks[-1][0] if chunks else last_id
        texts = [text for _, _, text in chunks]
        if len(texts) != report.chunks:
            print(f"warning: report says {report.chunks} chunks, the database holds {len(texts)} new", flush=True)
        with Phase() as e:
            vectors = kb.embedder.encode_documents(texts)
        assert vectors.shape[0] == len(texts)
        pipe.add(p)
        alone.add(e)
        row = {"documents": len(part), "chunks": len(texts), "pipeline_s": round(p.wall, 2),
               "embedder_s": round(e.wall, 2), "pipeline_cpu_s": round(p.cpu, 2), "embedder_cpu_s": round(e.cpu, 2),
               "loadavg": e.load}
        if not args.no_grouped:
            groups = flush_groups(chunks, result["settings"]["flush_chunks"])
            with Phase() as g:
                for group in groups:
                    kb.embedder.encode_documents(group)
            grouped.add(g)
            counts["calls"] += len(groups)
            row["embedder_flush_groups_s"] = round(g.wall, 2)
        per_slice.append(row)
        counts["added"] += len(report.added)
        counts["duplicates"] += len(report.duplicates)
        counts["failed"] += len(report.failed)
        counts["chunks"] += report.chunks
        print(f"slice {i + 1}/{k}: {len(texts)} chunks, pipeline {p.wall:.1f}s, embedder alone {e.wall:.1f}s, "
              f"load {e.load[0]}", flush=True)
    n = counts["chunks"]
    result["pipeline"] = {**pipe.to_dict(n), "documents": len(docs), "docs_per_s": rate(len(docs), pipe.wall),
                          "ingest_calls": k, "report": {key: v for key, v in counts.items() if key != "calls"}}
    call = "encode_documents(all texts)" if k == 1 else "encode_documents(texts of each slice)"
    result["embedder_only"] = {**alone.to_dict(n), "call": call}
    result["ratio_pipeline_over_embedder"] = round(alone.wall / pipe.wall, 3)
    # Contention inflates wall time but hardly CPU time: the share of the pipeline's CPU spent embedding.
    result["cpu_ratio_embedder_over_pipeline"] = round(alone.cpu / pipe.cpu, 3)
    if not args.no_grouped:
        result["embedder_only_flush_groups"] = {**grouped.to_dict(n), "calls": counts["calls"]}
        result["ratio_pipeline_over_embedder_flush_groups"] = round(grouped.wall / pipe.wall, 3)
    result["slices"] = per_slice


def run(args: argparse.Namespace, kb_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "ingest_speed", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "loadavg_start": loadavg()}
    docs = load_documents(args.data, args.limit)
    print(f"{len(docs)} documents from {args.data}; threads={args.threads}; KB at {kb_dir}", flush=True)

    with Phase() as load_phase:
        kb = KnowledgeBase.open(kb_dir, create=True, num_threads=args.threads)
        embedder = kb.embedder
        # Warm the model up (first calls allocate), so neither timed phase pays for it.
        embedder.encode_documents([doc.text for _, doc in docs[:32]])
    settings = kb.settings
    result["settings"] = {
        "embedder": settings.embedder, "embed_batch_size": settings.embed_batch_size,
        "num_threads": settings.num_threads, "chunker": settings.chunker, "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap, "hnsw_m": settings.hnsw_m,
        "hnsw_ef_construction": settings.hnsw_ef_construction,
        "flush_chunks": flush_size(settings.embed_batch_size),
    }
    result["machine"] = machine()
    result["model_load"] = load_phase.to_dict()

    try:
        measure(args, kb, kb_dir, docs, result)
        print("re-ingest of the unchanged documents ...", flush=True)
        with Phase() as again:
            second = kb.ingest_documents(iter(docs), total=len(docs))
        result["reingest_noop"] = {
            **again.to_dict(), "unchanged": len(second.unchanged), "chunks_embedded": second.chunks,
            "fraction_of_first_ingest": round(again.wall / result["pipeline"]["wall_s"], 4),
        }
    finally:
        kb.close()
    result["peak_rss_mib"] = peak_rss_mib()
    result["loadavg_end"] = loadavg()
    return result


def show(result: dict[str, Any]) -> None:
    p, e = result["pipeline"], result["embedder_only"]
    rows = [
        ["pipeline (ingest_documents)", p["chunks"], p["wall_s"], p["cpu_s"], p["docs_per_s"], p["chunks_per_s"]],
        [f"embedder alone, {e['call'][len('encode_documents('):-1]}", e["chunks"], e["wall_s"], e["cpu_s"], "",
         e["chunks_per_s"]],
    ]
    if "embedder_only_flush_groups" in result:
        g = result["embedder_only_flush_groups"]
        rows.append(["embedder alone, flush groups", g["chunks"], g["wall_s"], g["cpu_s"], "", g["chunks_per_s"]])
    r = result["reingest_noop"]
    rows.append(["re-ingest (all unchanged)", r["chunks_embedded"], r["wall_s"], r["cpu_s"],
                 rate(result["pipeline"]["documents"], r["wall_s"]), ""])
    print()
    print_table(rows, ["phase", "chunks", "wall s", "cpu s", "docs/s", "chunks/s"])
    print(f"\nratio pipeline / embedder alone (wall): {result['ratio_pipeline_over_embedder']}"
          + (f" (flush groups: {result['ratio_pipeline_over_embedder_flush_groups']})"
             if "ratio_pipeline_over_embedder_flush_groups" in result else "")
          + "   target >= 0.80")
    print(f"CPU seconds embedding alone / CPU seconds of the pipeline: {result['cpu_ratio_embedder_over_pipeline']}")
    print(f"load average start {result['loadavg_start']} end {result['loadavg_end']}; "
          f"peak RSS {result['peak_rss_mib']} MiB")


def main() -> None:
    args = parse_args()
    if args.kb is not None:
        if args.kb.exists() and any(args.kb.iterdir()):
            raise SystemExit(f"{args.kb} exists and is not empty — give a new directory")
        result = run(args, args.kb)
        result["kb"] = str(args.kb)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="ragtune-ingest-bench-"))
        try:
            result = run(args, tmp / "kb")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result["args"] = {"threads": args.threads, "limit": args.limit, "slices": args.slices,
                      "grouped": not args.no_grouped, "data": str(args.data)}
    show(result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
