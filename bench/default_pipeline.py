"""ragtune's default retrieval without training, on SciFact's train split cut into train / dev / held-out queries.

``build`` makes (or catches up) one knowledge base of the corpus per variant: chunk size, contextual chunk
headers (chunk_context) and embedding precision, through the real ingestion, timing it. ``sweep`` opens such KBs
and measures query-time settings through the real ``HybridRetriever`` on rankings computed once per query:
document-level fusion weight, dense/sparse weights, RRF k, and the BM25 weight of the context header (a sparse
index rebuilt from the KB's own chunks with ``store.local.chunk_tokens``). Settings are chosen on the train + dev
queries (657) only; the held-out 152 and all 809 are reported for the chosen ones.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/default_pipeline.py build \\
        --kb /tmp/evals/scifact_c1_int8_256 --chunk-size 256 --chunk-context 1 --precision int8
    .venv/bin/python bench/default_pipeline.py sweep --kb /tmp/evals/scifact_c1_int8_256 --kb ... \\
        --out bench/results/default_pipeline.json
    .venv/bin/python bench/default_pipeline.py bm25 --kb /tmp/evals/scifact_c1_fp32_256   # k1 x b -> bm25_params.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, write_json  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.ir import DEFAULT_METRICS as METRICS  # noqa: E402
from ragtune.evaluate.ir import evaluate  # noqa: E402
from ragtune.evaluate.retrieval import CHUNK_DEPTH, corpus_documents  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.retrieve import HybridRetriever  # noqa: E402
from ragtune.store.bm25 import BM25Index  # noqa: E402
from ragtune.store.local import chunk_tokens  # noqa: E402
from ragtune.store.text import tokenize  # noqa: E402
from ragtune.types import Chunk, ChunkMeta, Hit  # noqa: E402

SPLIT_DIR = RESULTS_DIR / "scifact_split"
PARTS = ("train", "dev", "heldout")


def query_parts(split_dir: Path = SPLIT_DIR) -> dict[str, list[str]]:
    return {part: (split_dir / f"{part}_queries.txt").read_text().split() for part in PARTS}


def build(args: argparse.Namespace) -> None:
    dataset = load_beir(args.beir, args.split)
    name = args.beir.resolve().name
    overrides: dict[str, Any] = {"chunk_size": args.chunk_size, "chunk_context": bool(args.chunk_context),
                                 "embed_precision": args.precision, "embed_backend": args.backend}
    if args.threads:
        overrides["num_threads"] = args.threads
    started = time.perf_counter()
    with KnowledgeBase.open(args.kb, create=True, **overrides) as kb:
        report = kb.ingest_documents(corpus_documents(dataset, name), total=len(dataset.corpus))
        stats = kb.stats()
        embedder = kb.embedder
    result = {"kb": str(args.kb), "settings": overrides, "ingest": report.to_dict(),
              "wall_s": round(time.perf_counter() - started, 1), "stats": stats,
              "embedder": getattr(embedder, "describe", lambda: {"backend": "torch"})(),
              "loadavg": loadavg(), "machine": machine()}
    print(json.dumps({k: result[k] for k in ("kb", "settings", "wall_s", "loadavg")}))
    (Path(args.kb) / "build.json").write_text(json.dumps(result, indent=2) + "\n")


class _CachedStore:
    """The KB's store with each query's dense and sparse rankings computed once; ``sparse`` may be a BM25 index
    rebuilt with another header weight."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.sparse_index: BM25Index | None = None
        self._dense: dict[bytes, list[tuple[int, float]]] = {}
        self._sparse: dict[tuple[int, str], list[tuple[int, float]]] = {}
        self._hits: dict[int, tuple[str, str, str]] = {}
        self._docs: dict[int, str] = {}

    def dense_search(self, vector: np.ndarray, k: int, filter: Any = None) -> list[tuple[int, float]]:
        key = vector.tobytes()
        if key not in self._dense:
            self._dense[key] = self.store.dense_search(vector, k, filter)
        return self._dense[key][:k]

    def sparse_search(self, text: str, k: int, filter: Any = None) -> list[tuple[int, float]]:
        key = (id(self.sparse_index), text)
        if key not in self._sparse:
            if self.sparse_index is None:
                self._sparse[key] = self.store.sparse_search(text, k, filter)
            else:
                ids, scores = self.sparse_index.search(tokenize(text), k, None)
                self._sparse[key] = list(zip(ids.tolist(), scores.tolist(), strict=True))
        return self._sparse[key][:k]

    def document_ids(self, ids: list[int]) -> dict[int, str]:
        missing = [i for i in ids if i not in self._docs]
        if missing:
            self._docs.update(self.store.document_ids(missing))
        return {i: self._docs[i] for i in ids if i in self._docs}

    def get(self, ids: list[int]) -> dict[int, Hit]:
        missing = [i for i in ids if i not in self._hits]
        if missing:
            for i, hit in self.store.get(missing).items():
                self._hits[i] = (hit.chunk_id, hit.document_id, hit.source)
        return {i: Hit(chunk_id=self._hits[i][0], document_id=self._hits[i][1], source=self._hits[i][2], text="",
                       score=0.0, meta=ChunkMeta()) for i in ids if i in self._hits}


class _CachedEmbedder:
    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.name, self.dim = embedder.name, embedder.dim
        self._vectors: dict[str, np.ndarray] = {}

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._vectors]
        if missing:
            for text, vector in zip(missing, self.embedder.encode_queries(missing), strict=True):
                self._vectors[text] = vector
        return np.vstack([self._vectors[t] for t in texts])


def header_index(kb: KnowledgeBase, boost: int | None = None, *, k1: float | None = None,
                 b: float | None = None) -> BM25Index:
    """The KB's BM25 index as it would be with the context header counted ``boost`` times and BM25's ``k1`` and
    ``b`` (None: as the KB has them; chunks read from the KB's database, whose schema is documented in the README)."""
    index = BM25Index(k1=kb.settings.bm25_k1 if k1 is None else k1, b=kb.settings.bm25_b if b is None else b)
    context = kb.store.chunk_context
    with sqlite3.connect(f"file:{kb.path / 'ragtune.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, text, meta FROM chunks ORDER BY id").fetchall()
    options = {} if boost is None else {"header_boost": boost}
    tokens = [chunk_tokens(Chunk(text=text, start=0, end=len(text), meta=ChunkMeta.model_validate_json(meta)),
                           context, **options) for _, text, meta in rows]
    index.add([r[0] for r in rows], tokens)
    return index


def run_queries(retriever: HybridRetriever, queries: dict[str, str], mode: str, prefix: str
                ) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid, text in queries.items():
        hits = retriever.search(text, CHUNK_DEPTH, mode=mode, candidates=CHUNK_DEPTH).hits
        ranked: dict[str, float] = {}
        for hit in hits:
            doc = hit.source.removeprefix(prefix)
            if doc not in ranked and len(ranked) < 100:
                ranked[doc] = 1.0 / (len(ranked) + 1)
        run[qid] = ranked
    return run


def scores(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], parts: dict[str, list[str]]
           ) -> dict[str, dict[str, float]]:
    out = {}
    groups = {**parts, "train+dev": parts["train"] + parts["dev"], "all": [q for p in PARTS for q in parts[p]]}
    for name, ids in groups.items():
        metrics = evaluate({q: run[q] for q in ids}, {q: qrels[q] for q in ids}, METRICS)
        out[name] = {k: round(v, 4) for k, v in metrics.items()}
    return out


def sweep(args: argparse.Namespace) -> None:
    dataset = load_beir(args.beir, args.split)
    prefix = f"beir:{args.beir.resolve().name}/"
    parts = query_parts(args.split_dir)
    results: dict[str, Any] = {}
    for kb_path in args.kb:
        started = time.perf_counter()
        with KnowledgeBase.open(kb_path) as kb:
            store = _CachedStore(kb.store)
            embedder = _CachedEmbedder(kb.embedder)
            s = kb.settings
            context = kb.store.chunk_context
            base = dict(candidates=CHUNK_DEPTH, dense_weight=1.0, sparse_weight=1.0, rrf_k=60, document_weight=0.0,
                        fusion="rrf")
            rows: dict[str, Any] = {}
            for mode in ("dense", "sparse", "hybrid"):
                retriever = HybridRetriever(store, embedder, **base)  # type: ignore[arg-type]
                rows[f"{mode} (defaults before this change)"] = scores(
                    run_queries(retriever, dataset.queries, mode, prefix), dataset.qrels, parts)
            boosts = args.boost if context >= 1 else [None]
            grid = list(itertools.product(boosts, args.document_weight, args.rrf_k, args.dense_weight))
            for n, (boost, doc_w, rrf_k, dense_w) in enumerate(grid):
                store.sparse_index = header_index(kb, boost) if boost is not None else None
                retriever = HybridRetriever(store, embedder, candidates=CHUNK_DEPTH,  # type: ignore[arg-type]
                                            dense_weight=dense_w, sparse_weight=1.0, rrf_k=rrf_k,
                                            document_weight=doc_w, fusion="rrf")
                label = f"hybrid boost={boost} document_weight={doc_w:g} rrf_k={rrf_k} dense_weight={dense_w:g}"
                rows[label] = scores(run_queries(retriever, dataset.queries, "hybrid", prefix), dataset.qrels, parts)
                if boost is not None:
                    sparse = HybridRetriever(store, embedder, **base)  # type: ignore[arg-type]
                    rows.setdefault(f"sparse boost={boost}", scores(
                        run_queries(sparse, dataset.queries, "sparse", prefix), dataset.qrels, parts))
                m = rows[label]
                print(f"[{n + 1}/{len(grid)}] {Path(kb_path).name} {label}: train+dev "
                      f"{m['train+dev']['ndcg_cut_10']:.4f} held-out {m['heldout']['ndcg_cut_10']:.4f} "
                      f"all {m['all']['ndcg_cut_10']:.4f}", flush=True)
            hybrid = {k: v for k, v in rows.items() if k.startswith("hybrid boost")}
            best = max(hybrid, key=lambda k: (hybrid[k]["train+dev"]["ndcg_cut_10"], k))
            build_info = json.loads((Path(kb_path) / "build.json").read_text()) if (
                Path(kb_path) / "build.json").is_file() else {}
            results[Path(kb_path).name] = {
                "kb": str(kb_path), "chunk_size": s.chunk_size, "chunk_context": context,
                "precision": s.embed_precision, "chunks": kb.store.count(), "build": build_info.get("ingest"),
                "build_wall_s": build_info.get("wall_s"), "build_loadavg": build_info.get("loadavg"),
                "chosen_on_train+dev": best, "chosen": hybrid[best], "rows": rows,
                "sweep_s": round(time.perf_counter() - started, 1),
            }
            print(f"{Path(kb_path).name}: chosen {best}: held-out {hybrid[best]['heldout']['ndcg_cut_10']:.4f}, all "
                  f"{hybrid[best]['all']['ndcg_cut_10']:.4f}", flush=True)
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    out.setdefault("kbs", {}).update(results)
    out["parity"] = parity(out["kbs"])
    out.update({"what": "SciFact train split (809 queries) cut into train 567 / dev 90 / held-out 152 "
                        "(bench/results/scifact_split); settings chosen on train+dev nDCG@10",
                "metrics": list(METRICS), "machine": machine(), "loadavg": loadavg()})
    write_json(args.out, out)


def bm25_sweep(args: argparse.Namespace) -> None:
    """BM25's k1 and b, sparse and hybrid (the KB's fusion and weights), chosen on train + dev."""
    dataset = load_beir(args.beir, args.split)
    prefix = f"beir:{args.beir.resolve().name}/"
    parts = query_parts(args.split_dir)
    rows: dict[str, Any] = {}
    with KnowledgeBase.open(args.kb) as kb:
        store = _CachedStore(kb.store)
        embedder = _CachedEmbedder(kb.embedder)
        s = kb.settings
        for k1, b in itertools.product(args.k1, args.b):
            store.sparse_index = header_index(kb, k1=k1, b=b)
            retriever = HybridRetriever(store, embedder, candidates=CHUNK_DEPTH,  # type: ignore[arg-type]
                                        dense_weight=s.dense_weight, sparse_weight=s.sparse_weight, rrf_k=s.rrf_k,
                                        document_weight=s.document_weight, fusion=s.fusion)
            label = f"k1={k1:g} b={b:g}"
            rows[label] = {mode: scores(run_queries(retriever, dataset.queries, mode, prefix), dataset.qrels, parts)
                           for mode in ("sparse", "hybrid")}
            m = rows[label]["hybrid"]
            print(f"{label}: hybrid train+dev {m['train+dev']['ndcg_cut_10']:.4f} held-out "
                  f"{m['heldout']['ndcg_cut_10']:.4f} all {m['all']['ndcg_cut_10']:.4f}", flush=True)
        fusion = {k: getattr(s, k) for k in ("fusion", "dense_weight", "sparse_weight", "rrf_k", "document_weight")}
    best = max(rows, key=lambda k: (rows[k]["hybrid"]["train+dev"]["ndcg_cut_10"], k))
    write_json(args.out, {
        "what": "BM25 k1 x b on SciFact train (809 queries cut into train 567 / dev 90 / held-out 152), chosen on "
                "train+dev hybrid nDCG@10", "kb": str(args.kb), "fusion": fusion, "chosen_on_train+dev": best,
        "chosen": rows[best], "rows": rows, "metrics": list(METRICS), "machine": machine(), "loadavg": loadavg()})
    print(f"chosen on train+dev: {best}: held-out {rows[best]['hybrid']['heldout']['ndcg_cut_10']:.4f}, all "
          f"{rows[best]['hybrid']['all']['ndcg_cut_10']:.4f}")


def parity(kbs: dict[str, Any]) -> list[dict[str, Any]]:
    """int8 against fp32 for KBs that differ in precision only: nDCG@10 on all 809 queries, dense and hybrid, with
    the settings before this change and with the int8 KB's chosen ones."""
    out = []
    for name, kb in kbs.items():
        if kb["precision"] != "int8":
            continue
        for other_name, other in kbs.items():
            if other["precision"] == "fp32" and (other["chunk_size"], other["chunk_context"]) == (
                    kb["chunk_size"], kb["chunk_context"]):
                row: dict[str, Any] = {"int8": name, "fp32": other_name}
                for label in ("dense (defaults before this change)", "hybrid (defaults before this change)",
                              kb["chosen_on_train+dev"]):
                    if label in kb["rows"] and label in other["rows"]:
                        a, b = kb["rows"][label]["all"]["ndcg_cut_10"], other["rows"][label]["all"]["ndcg_cut_10"]
                        row[label] = {"int8": a, "fp32": b, "diff": round(a - b, 4),
                                      "within_0.005": abs(a - b) <= 0.005}
                out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--beir", type=Path, default=default_scifact_dir())
    b.add_argument("--kb", type=Path, required=True)
    b.add_argument("--chunk-size", type=int, default=256)
    b.add_argument("--chunk-context", type=int, choices=(0, 1), default=1)
    b.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto")
    b.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--split", default="train", help="qrels split (the corpus is the same)")
    w = sub.add_parser("sweep")
    w.add_argument("--beir", type=Path, default=default_scifact_dir())
    w.add_argument("--kb", type=Path, action="append", required=True)
    w.add_argument("--boost", type=int, nargs="+", default=[1, 2, 3])
    w.add_argument("--document-weight", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    w.add_argument("--rrf-k", type=int, nargs="+", default=[20, 60])
    w.add_argument("--dense-weight", type=float, nargs="+", default=[0.8, 1.0, 1.25])
    w.add_argument("--split", default="train", help="qrels split")
    w.add_argument("--split-dir", type=Path, default=SPLIT_DIR, help="{train,dev,heldout}_queries.txt")
    w.add_argument("--out", type=Path, default=RESULTS_DIR / "default_pipeline.json")
    m = sub.add_parser("bm25")
    m.add_argument("--beir", type=Path, default=default_scifact_dir())
    m.add_argument("--kb", type=Path, required=True)
    m.add_argument("--k1", type=float, nargs="+", default=[0.9, 1.2, 1.5])
    m.add_argument("--b", type=float, nargs="+", default=[0.4, 0.6, 0.75, 0.9])
    m.add_argument("--split", default="train", help="qrels split")
    m.add_argument("--split-dir", type=Path, default=SPLIT_DIR, help="{train,dev,heldout}_queries.txt")
    m.add_argument("--out", type=Path, default=RESULTS_DIR / "bm25_params.json")
    args = ap.parse_args()
    {"build": build, "sweep": sweep, "bm25": bm25_sweep}[args.command](args)


if __name__ == "__main__":
    main()
