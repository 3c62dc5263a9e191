"""ragtune's default pipeline beside LlamaIndex's QueryFusion retriever on SciFact, measured in one run.

Both sides index the same corpus (title + abstract per document) with the same all-MiniLM-L6-v2 weights (the
bundled copy), on one thread each (OMP_NUM_THREADS=1, torch.set_num_threads(1)), one after the other in this
process's run, and answer the same queries (SciFact train split: all 809, and the held-out 152 of
bench/results/scifact_split). LlamaIndex: SentenceSplitter at 512 tokens, HuggingFaceEmbedding, an in-memory
VectorStoreIndex, BM25Retriever (bm25s, English stemming) and QueryFusionRetriever (reciprocal rank fusion, one
query, no LLM). ragtune: a new knowledge base with default settings (``KnowledgeBase.open(create=True)``).

Reported per side: ingest wall and CPU seconds, chunks, nDCG@10 / Recall@100 (documents, trec_eval semantics)
and query latency p50/p95 for each retriever, with the load average around each phase (the machine is shared).

LlamaIndex runs from its own virtual environment (never ragtune's), called through a subprocess:

    python3 -m venv .cache/peer-venv-llamaindex
    .cache/peer-venv-llamaindex/bin/pip install /opt/wheels/torch-2.13.0+cpu-*.whl   # or torch from the CPU index
    .cache/peer-venv-llamaindex/bin/pip install 'llama-index-core==0.14.*' llama-index-retrievers-bm25 \\
        llama-index-embeddings-huggingface
    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/peer_llamaindex.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, percentiles, write_json  # noqa: E402

from ragtune.embed.sentence_transformers import resolve_model  # noqa: E402
from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.ir import DEFAULT_METRICS as METRICS  # noqa: E402
from ragtune.evaluate.ir import evaluate  # noqa: E402
from ragtune.evaluate.retrieval import CHUNK_DEPTH, corpus_documents  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEER_PYTHON = REPO / ".cache" / "peer-venv-llamaindex" / "bin" / "python"
SPLIT_DIR = RESULTS_DIR / "scifact_split"

# Runs in the peer's virtual environment. argv: corpus.jsonl, queries JSON ({id: text}), model dir, output JSON.
_PEER_SCRIPT = r"""
import json, os, resource, sys, time
import torch
torch.set_num_threads(1)
from importlib.metadata import version
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.retrievers.bm25 import BM25Retriever
import Stemmer

corpus_path, queries_path, model_dir, out_path = sys.argv[1:5]
top_k = int(sys.argv[5])
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
Settings.llm = None
docs = []
for line in open(corpus_path):
    row = json.loads(line)
    text = (row.get("title") or "") + "\n" + (row.get("text") or "")
    docs.append(Document(text=text.strip(), doc_id=row["_id"], metadata={"doc": row["_id"]}))
load = os.getloadavg()
t, c = time.perf_counter(), cpu()
embed_model = HuggingFaceEmbedding(model_name=model_dir, device="cpu")
nodes = SentenceSplitter(chunk_size=512).get_nodes_from_documents(docs)
index = VectorStoreIndex(nodes, embed_model=embed_model)
bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=top_k, stemmer=Stemmer.Stemmer("english"),
                                   language="english")
ingest = {"wall_s": time.perf_counter() - t, "cpu_s": cpu() - c, "chunks": len(nodes), "loadavg_before": load,
          "loadavg_after": os.getloadavg()}
vector = index.as_retriever(similarity_top_k=top_k)
fusion = QueryFusionRetriever([vector, bm25], similarity_top_k=top_k, num_queries=1, mode="reciprocal_rerank",
                              use_async=False)
queries = json.load(open(queries_path))
runs, latencies = {}, {}
for name, retriever in (("sparse", bm25), ("dense", vector), ("hybrid", fusion)):
    runs[name], latencies[name] = {}, []
    load = os.getloadavg()
    for qid, text in queries.items():
        t = time.perf_counter()
        hits = retriever.retrieve(text)
        latencies[name].append((time.perf_counter() - t) * 1000)
        ranked = {}
        for hit in hits:
            doc = hit.node.metadata["doc"]
            if doc not in ranked:
                ranked[doc] = 1.0 / (len(ranked) + 1)
        runs[name][qid] = ranked
    latencies[name + "_loadavg"] = [load, os.getloadavg()]
json.dump({"ingest": ingest, "runs": runs, "latency_ms": latencies, "torch_threads": torch.get_num_threads(),
           "versions": {p: version(p) for p in ("llama-index-core", "llama-index-retrievers-bm25",
                                                "llama-index-embeddings-huggingface", "bm25s", "sentence-transformers",
                                                "torch")}},
          open(out_path, "w"))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scores(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], groups: dict[str, list[str]]
           ) -> dict[str, dict[str, float]]:
    return {name: {k: round(v, 4) for k, v in evaluate({q: run[q] for q in ids}, {q: qrels[q] for q in ids},
                                                      METRICS).items()} for name, ids in groups.items()}


def run_ragtune(beir: Path, dataset: Any, queries: dict[str, str], kb_dir: Path, threads: int) -> dict[str, Any]:
    name = beir.resolve().name
    load = loadavg()
    t, c = time.perf_counter(), _self_cpu()
    with KnowledgeBase.open(kb_dir, create=True, num_threads=threads) as kb:
        report = kb.ingest_documents(corpus_documents(dataset, name), total=len(dataset.corpus))
        kb.store.save_indexes()
        ingest = {"wall_s": time.perf_counter() - t, "cpu_s": _self_cpu() - c, "chunks": report.chunks,
                  "stages_s": report.to_dict()["stages_s"], "loadavg_before": load, "loadavg_after": loadavg(),
                  "settings": {k: getattr(kb.settings, k) for k in ("chunk_size", "chunk_context", "embed_backend",
                                                                    "embed_precision", "fusion", "dense_weight",
                                                                    "sparse_weight", "rrf_k", "document_weight")},
                  "embedder": kb.embedder.describe() if hasattr(kb.embedder, "describe") else {}}
    prefix = f"beir:{name}/"
    runs: dict[str, dict[str, dict[str, float]]] = {}
    latencies: dict[str, Any] = {}
    # A fresh process state: the KB reopened the way a user's next command opens it.
    with KnowledgeBase.open(kb_dir, num_threads=threads) as kb:
        kb.search("warm up the embedder", k=1)
        for mode in ("sparse", "dense", "hybrid"):
            runs[mode], latencies[mode] = {}, []
            load = loadavg()
            for qid, text in queries.items():
                t = time.perf_counter()
                hits = kb.retrieve(text, CHUNK_DEPTH, mode=mode, candidates=CHUNK_DEPTH).hits
                latencies[mode].append((time.perf_counter() - t) * 1000)
                ranked: dict[str, float] = {}
                for hit in hits:
                    doc = hit.source.removeprefix(prefix)
                    if doc not in ranked and len(ranked) < 100:
                        ranked[doc] = 1.0 / (len(ranked) + 1)
                runs[mode][qid] = ranked
            latencies[mode + "_loadavg"] = [load, loadavg()]
            # The latency a user sees for the 10 hits they read (fewer hits to fetch than the 200 scored above).
            ten = []
            for text in list(queries.values())[:200]:
                t = time.perf_counter()
                kb.retrieve(text, 10, mode=mode)
                ten.append((time.perf_counter() - t) * 1000)
            latencies[mode + "_k10"] = ten
    return {"ingest": ingest, "runs": runs, "latency_ms": latencies}


def run_peer(python: Path, beir: Path, queries: dict[str, str], work: Path, top_k: int) -> dict[str, Any]:
    script, qfile, out = work / "peer.py", work / "queries.json", work / "peer_out.json"
    script.write_text(_PEER_SCRIPT)
    qfile.write_text(json.dumps(queries))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([str(python), str(script), str(beir / "corpus.jsonl"), str(qfile),
                    resolve_model("all-MiniLM-L6-v2"), str(out), str(top_k)], check=True, env=env)
    result = json.loads(out.read_text())
    result["process"] = {"wall_s": time.perf_counter() - started, "cpu_s": _children_cpu() - cpu}
    return result


def summarise(side: dict[str, Any], qrels: dict[str, dict[str, int]], groups: dict[str, list[str]]) -> dict[str, Any]:
    lat = side["latency_ms"]
    return {
        "ingest": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in side["ingest"].items()},
        "quality": {mode: scores(run, qrels, groups) for mode, run in side["runs"].items()},
        "latency_ms": {mode: percentiles(lat[mode]) for mode in side["runs"]},
        "latency_ms_k10": {mode: percentiles(lat[f"{mode}_k10"]) for mode in side["runs"] if f"{mode}_k10" in lat},
        "latency_loadavg": {mode: lat.get(f"{mode}_loadavg") for mode in side["runs"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=100, help="LlamaIndex retrievers' similarity_top_k")
    ap.add_argument("--limit", type=int, default=0, help="first N queries only (a quick check)")
    ap.add_argument("--split", default="train", help="qrels split")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "peer_llamaindex.json")
    args = ap.parse_args()
    if not args.peer_python.exists():
        sys.exit(f"{args.peer_python} not found — build the peer's venv first (see this script's docstring)")
    dataset = load_beir(args.beir, args.split)
    queries = dict(dataset.queries)
    if args.limit:
        queries = dict(list(queries.items())[: args.limit])
    heldout = [q for q in (SPLIT_DIR / "heldout_queries.txt").read_text().split() if q in queries]
    groups = {"all": list(queries), **({"heldout": heldout} if heldout else {})}
    work = Path(tempfile.mkdtemp(prefix="peer-llamaindex-"))
    try:
        ours = run_ragtune(args.beir, dataset, queries, work / "kb", args.threads)
        print(f"ragtune: ingest {ours['ingest']['wall_s']:.0f} s", flush=True)
        peer = run_peer(args.peer_python, args.beir, queries, work, args.top_k)
        print(f"LlamaIndex: ingest {peer['ingest']['wall_s']:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "what": "ragtune defaults beside LlamaIndex QueryFusionRetriever (RRF over bm25s + vector, 512-token chunks) "
                "on SciFact's train split, same MiniLM weights, one thread each, one run",
        "queries": len(queries), "heldout_queries": len(heldout), "threads": args.threads,
        "ragtune": summarise(ours, dataset.qrels, groups),
        "llamaindex": {**summarise(peer, dataset.qrels, groups), "versions": peer["versions"],
                       "process": peer["process"], "torch_threads": peer["torch_threads"]},
        "machine": machine(), "loadavg": loadavg(),
    }
    r, p = result["ragtune"], result["llamaindex"]
    result["ratios"] = {
        "ingest_wall": round(r["ingest"]["wall_s"] / p["ingest"]["wall_s"], 3),
        "ingest_cpu": round(r["ingest"]["cpu_s"] / p["ingest"]["cpu_s"], 3),
        "hybrid_query_p50_speedup": round(p["latency_ms"]["hybrid"]["p50"] / r["latency_ms"]["hybrid"]["p50"], 1),
        "hybrid_query_p50_speedup_k10": round(
            p["latency_ms"]["hybrid"]["p50"] / r["latency_ms_k10"]["hybrid"]["p50"], 1),
    }
    for side in ("ragtune", "llamaindex"):
        q = result[side]["quality"]
        print(f"{side:10s} ingest {result[side]['ingest']['wall_s']:7.1f} s  " + "  ".join(
            f"{m} {q[m]['all']['ndcg_cut_10']:.4f}/{q[m].get('heldout', q[m]['all'])['ndcg_cut_10']:.4f} "
            f"p50 {result[side]['latency_ms'][m]['p50']:.1f} ms" for m in ("sparse", "dense", "hybrid")))
    print(json.dumps(result["ratios"]))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
