"""Cost of the knowledge graph: build time and disk against the plain index, and query latency per mode.

For each data set (LiHua-World's chat logs, SciFact's abstracts):

1. ``plain``: ingest into a fresh KB without a graph (bundled MiniLM, default chunking) and time it.
2. ``build``: a copy of that KB gets its graph with ``kb.build_graph()`` (entity extraction, then Louvain
   communities), timed apart. The goal: plain ingest + graph build <= 1.5 x plain ingest.
3. ``ingest``: (LiHua-World only; SciFact's would take another quarter of an hour) a fresh KB ingested with
   ``graph = true``, where extraction runs in the parsing thread beside the embedder.
4. Disk: the database and index files of the plain KB, the graph tables' bytes (SQLite dbstat).
5. Query latency (warm, one process) of hybrid, graph and auto over the data set's questions.
6. (SciFact only) nDCG@10 and recall@100 of hybrid, graph and auto on the train queries (809), over the graph KB:
   the graph must not cost a single-hop collection quality.

Each phase is recorded in WORKDIR/state-DATASET.json as it finishes, so an interrupted run resumes; KBs live in
WORKDIR (default /tmp/ragtune-graph-bench). Heavy: run it under the shared lock, niced, one thread:

    flock /tmp/ragtune-heavy.lock nice -n 5 env OMP_NUM_THREADS=1 .venv/bin/python bench/graph_cost.py \
        --dataset lihua --dataset scifact
"""

from __future__ import annotations

import argparse
import json
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
    loadavg,
    machine,
    percentiles,
    print_table,
    write_json,
)
from graph_lihua import LIHUA_DIR, lihua_questions  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.retrieval import corpus_documents  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402

MODES = ("hybrid", "graph", "auto")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", choices=("lihua", "scifact"), help="repeatable")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ragtune-graph-bench"))
    parser.add_argument("--queries", type=int, default=300, help="questions timed per mode")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "graph_cost.json")
    return parser.parse_args()


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = machine()
    for dataset in args.dataset or ["lihua"]:
        results[dataset] = run_dataset(dataset, args)
        write_json(args.out, results)
    rows = []
    for dataset in args.dataset or ["lihua"]:
        r = results[dataset]
        rows.append([dataset, r["plain"]["wall_s"], r["build"]["wall_s"], r["build_ratio"],
                     r.get("ingest", {}).get("wall_s", "-"), r.get("ingest_ratio", "-"),
                     round(r["disk"]["plain_bytes"] / 2**20, 1), round(r["disk"]["graph_bytes"] / 2**20, 1),
                     *[r["latency_ms"][m]["p50"] for m in MODES]])
    print_table(rows, ["data", "plain s", "build s", "(plain+build)/plain", "graph ingest s", "ingest ratio",
                       "plain MiB", "graph MiB", *[f"{m} p50 ms" for m in MODES]])


def run_dataset(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    state_path = args.workdir / f"state-{dataset}.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}

    def save() -> None:
        state_path.write_text(json.dumps(state, indent=2))

    plain_kb, graph_kb = args.workdir / f"{dataset}-plain", args.workdir / f"{dataset}-graph"
    if "plain" not in state:
        shutil.rmtree(plain_kb, ignore_errors=True)
        state["plain"] = timed_ingest(dataset, plain_kb, graph=False)
        save()
    if "build" not in state:
        shutil.rmtree(graph_kb, ignore_errors=True)
        shutil.copytree(plain_kb, graph_kb)
        with KnowledgeBase.open(graph_kb) as kb:
            with Phase() as extract:
                report = kb.build_graph(communities=False)
            from ragtune.graph import build_communities

            with Phase() as communities:
                community_report = build_communities(kb.graph)
            stats = kb.graph.stats()
        state["build"] = {**extract.to_dict(), "wall_s": round(extract.wall + communities.wall, 3),
                          "extract": extract.to_dict(), "communities": {**communities.to_dict(), **community_report},
                          "report": report, "graph": stats}
        save()
    if dataset == "lihua" and "ingest" not in state:
        fresh = args.workdir / f"{dataset}-ingested"
        shutil.rmtree(fresh, ignore_errors=True)
        state["ingest"] = timed_ingest(dataset, fresh, graph=True)
        shutil.rmtree(fresh, ignore_errors=True)
        save()
    if "latency_ms" not in state:
        state["latency_ms"] = latencies(dataset, graph_kb, args.queries)
        save()
    if dataset == "scifact" and "quality" not in state:
        from ragtune.evaluate.retrieval import evaluate_beir

        report = evaluate_beir(default_scifact_dir(), graph_kb, split="train", modes=MODES)
        state["quality"] = {"split": "train", "queries": report["queries"],
                            **{mode: {k: v for k, v in r["metrics"].items() if k in ("ndcg_cut_10", "recall_100")}
                               for mode, r in report["modes"].items()}}
        save()
    plain_bytes = dir_bytes(plain_kb)
    out = {
        **state,
        "build_ratio": round((state["plain"]["wall_s"] + state["build"]["wall_s"]) / state["plain"]["wall_s"], 3),
        "disk": {"plain_bytes": plain_bytes, "graph_bytes": state["build"]["graph"]["disk_bytes"],
                 "graph_share_of_plain": round(state["build"]["graph"]["disk_bytes"] / plain_bytes, 3)},
    }
    if "ingest" in state:
        out["ingest_ratio"] = round(state["ingest"]["wall_s"] / state["plain"]["wall_s"], 3)
        out["ingest_cpu_ratio"] = round(state["ingest"]["cpu_s"] / state["plain"]["cpu_s"], 3)
    return out


def timed_ingest(dataset: str, path: Path, *, graph: bool) -> dict[str, Any]:
    """Open (models loaded before the clock starts), then time the ingest alone."""
    with KnowledgeBase.open(path, create=True, graph=graph) as kb:
        kb.embedder.encode_documents(["warm up"])
        if kb.graph is not None:
            kb.graph.extractor.extract(["Warm up the tagger, Ada."])
        with Phase() as phase:
            if dataset == "lihua":
                report = kb.ingest(LIHUA_DIR / "docs")
            else:
                beir = load_beir(default_scifact_dir(), "train")
                report = kb.ingest_documents(corpus_documents(beir, "scifact"), total=len(beir.corpus))
        return {**phase.to_dict(), "chunks": report.chunks, "documents": len(report.added), "graph": graph,
                "loadavg_before": loadavg()}


def latencies(dataset: str, path: Path, limit: int) -> dict[str, Any]:
    """Per mode, warm, one process; the modes take turns on each question so that a change of load on this
    shared machine hits them alike."""
    if dataset == "lihua":
        questions = [(q["question"], q["type"]) for q in lihua_questions()][:limit]
    else:
        beir = load_beir(default_scifact_dir(), "train")
        questions = [(text, "Single") for text in list(beir.queries.values())[:limit]]
    times: dict[str, list[tuple[float, str]]] = {mode: [] for mode in MODES}
    with KnowledgeBase.open(path) as kb:
        for mode in MODES:
            kb.retrieve(questions[0][0], 10, mode=mode)  # models and caches warm
        for question, qtype in questions:
            for mode in MODES:
                started = time.perf_counter()
                kb.retrieve(question, 10, mode=mode)
                times[mode].append(((time.perf_counter() - started) * 1000, qtype))
    out: dict[str, Any] = {mode: {**percentiles([t for t, _ in rows]),
                                  "single_hop": percentiles([t for t, q in rows if q == "Single"])}
                           for mode, rows in times.items()}
    out["auto_over_hybrid_single_hop_p50"] = round(out["auto"]["single_hop"]["p50"]
                                                   / out["hybrid"]["single_hop"]["p50"], 3)
    out["loadavg"] = loadavg()
    return out


if __name__ == "__main__":
    main()
