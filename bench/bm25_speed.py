"""Benchmark ragtune's analyzer and BM25 index against bm25s and rank_bm25 (SciFact plus synthetic scale)."""

from __future__ import annotations

import os

# Single-threaded numbers: pin the BLAS/OpenMP pools before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import rank_bm25  # noqa: E402
from _common import RESULTS_DIR, default_scifact_dir, loadavg, peak_rss_mib, print_table, write_json  # noqa: E402

from ragtune.store.bm25 import BM25Index  # noqa: E402
from ragtune.store.text import tokenize  # noqa: E402

K1, B = 1.2, 0.75


def _percentiles(wall: Sequence[float], cpu: Sequence[float]) -> dict[str, float]:
    wall_ms, cpu_ms = np.asarray(wall) * 1000, np.asarray(cpu) * 1000
    return {
        "p50_ms": round(float(np.percentile(wall_ms, 50)), 3),
        "p95_ms": round(float(np.percentile(wall_ms, 95)), 3),
        "mean_ms": round(float(wall_ms.mean()), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 3),
        "cpu_p95_ms": round(float(np.percentile(cpu_ms, 95)), 3),
        "queries": len(wall_ms),
    }


def _latencies(search: Callable[[list[str]], Any], queries: list[list[str]], warmup: int = 20) -> dict[str, float]:
    """Wall-clock and thread CPU time per query; CPU time is immune to other processes on a shared machine."""
    for query in queries[:warmup]:
        search(query)
    wall, cpu = [], []
    for query in queries:
        start, start_cpu = time.perf_counter(), time.thread_time()
        search(query)
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return _percentiles(wall, cpu)


def _ndcg_at_10(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def _bm25s_search(retriever: bm25s.BM25, k: int) -> Callable[[list[str]], np.ndarray]:
    def search(query: list[str]) -> np.ndarray:
        # bm25s rejects queries with no known token; ragtune returns nothing for those, so do the same here.
        if not any(token in retriever.vocab_dict for token in query):
            return np.empty(0, dtype=np.int64)
        docs, _ = retriever.retrieve([query], k=k, show_progress=False, n_threads=0)
        return docs[0]

    return search


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_scifact(
    data: Path, k: int, rank_bm25_queries: int
) -> tuple[dict[str, Any], list[list[str]], list[list[str]]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (data / "queries.jsonl").open(encoding="utf-8")]
    texts = [f"{doc.get('title', '')} {doc['text']}" for doc in corpus]
    qrels: dict[str, dict[str, int]] = {}
    qrels_path = data / "qrels" / "train.tsv"
    if qrels_path.exists():
        for line in qrels_path.read_text(encoding="utf-8").splitlines()[1:]:
            query_id, doc_id, score = line.split("\t")
            qrels.setdefault(query_id, {})[doc_id] = int(score)

    tokenize("warm up jieba-free paths")
    start = time.perf_counter()
    doc_tokens = [tokenize(text) for text in texts]
    cold = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts:
        tokenize(text)
    warm = time.perf_counter() - start
    query_tokens = [tokenize(query["text"]) for query in queries]
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6
    result: dict[str, Any] = {
        "docs": len(texts),
        "queries": len(queries),
        "avg_doc_tokens": round(float(np.mean([len(t) for t in doc_tokens])), 1),
        "tokenize": {
            "docs_per_s_cold": round(len(texts) / cold),
            "docs_per_s_warm": round(len(texts) / warm),
            "mb_per_s_warm": round(megabytes / warm, 2),
            "note": "cold = first pass, filling the stem cache; warm = second pass",
        },
    }
    ids = list(range(len(texts)))

    start = time.perf_counter()
    index = BM25Index(k1=K1, b=B)
    index.add(ids, doc_tokens)
    ragtune_build = time.perf_counter() - start
    ragtune_times = _latencies(partial(index.search, k=k), query_tokens)

    start = time.perf_counter()
    retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
    retriever.index(doc_tokens, show_progress=False)
    bm25s_build = time.perf_counter() - start
    bm25s_search = _bm25s_search(retriever, k)
    bm25s_times = _latencies(bm25s_search, query_tokens)

    start = time.perf_counter()
    okapi = rank_bm25.BM25Okapi(doc_tokens, k1=K1, b=B)
    okapi_build = time.perf_counter() - start
    okapi_times = _latencies(
        lambda q: np.argpartition(-okapi.get_scores(q), k)[:k], query_tokens[:rank_bm25_queries], warmup=2
    )

    # Same tokens, same formula: the top-k score lists should agree query by query.
    agree = 0
    ndcg: dict[str, list[float]] = {"ragtune": [], "bm25s": []}
    for query, tokens in zip(queries, query_tokens, strict=True):
        ours, our_scores = index.search(tokens, k)
        theirs = bm25s_search(tokens)
        if len(theirs):
            their_scores = retriever.get_scores(tokens)[theirs]
            their_scores = their_scores[their_scores > 0]
        else:
            their_scores = np.empty(0)
        agree += len(our_scores) == len(their_scores) and bool(np.allclose(our_scores, their_scores, rtol=1e-5))
        if query["_id"] in qrels:
            ndcg["ragtune"].append(_ndcg_at_10([corpus[i]["_id"] for i in ours], qrels[query["_id"]]))
            ndcg["bm25s"].append(_ndcg_at_10([corpus[i]["_id"] for i in theirs], qrels[query["_id"]]))

    result["engines"] = {
        "ragtune": {"build_s": round(ragtune_build, 3), **ragtune_times},
        "bm25s": {"build_s": round(bm25s_build, 3), **bm25s_times},
        "rank_bm25": {
            "build_s": round(okapi_build, 3),
            **okapi_times,
            "note": f"BM25Okapi get_scores + argpartition; first {okapi_times['queries']} queries only (it is slow)",
        },
    }
    result["top_k_scores_identical_to_bm25s"] = f"{agree}/{len(queries)}"
    if qrels:
        result["ndcg@10_train_qrels"] = {name: round(float(np.mean(v)), 4) for name, v in ndcg.items()}
    return result, doc_tokens, query_tokens


def _synthetic_docs(doc_tokens: list[list[str]], n: int, seed: int) -> list[list[str]]:
    """Documents with SciFact's length distribution and unigram term distribution (Zipf-like)."""
    counts: dict[str, int] = {}
    for doc in doc_tokens:
        for token in doc:
            counts[token] = counts.get(token, 0) + 1
    terms = np.array(list(counts), dtype=object)
    probs = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    probs /= probs.sum()
    lengths_pool = np.array([len(doc) for doc in doc_tokens])
    rng = np.random.default_rng(seed)
    docs: list[list[str]] = []
    # Generated in slices so the temporary arrays stay small next to the token lists themselves.
    for start in range(0, n, 50_000):
        lengths = rng.choice(lengths_pool, min(50_000, n - start))
        flat = terms[rng.choice(len(terms), int(lengths.sum()), p=probs)].tolist()
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        docs.extend(flat[offsets[i] : offsets[i + 1]] for i in range(len(lengths)))
    return docs


def bench_scale(
    doc_tokens: list[list[str]], query_tokens: list[list[str]], n: int, k: int, batch: int, bm25s_max: int
) -> dict[str, Any]:
    start = time.perf_counter()
    docs = _synthetic_docs(doc_tokens, n, seed=n)
    extra = _synthetic_docs(doc_tokens, 2000, seed=n + 1)
    result: dict[str, Any] = {
        "docs": n,
        "generate_s": round(time.perf_counter() - start, 1),
        "postings_per_query_note": "queries are the 809 SciFact claims; documents sample SciFact's unigram model",
    }

    start = time.perf_counter()
    index = BM25Index(k1=K1, b=B)
    for offset in range(0, n, batch):
        index.add(range(offset, min(n, offset + batch)), docs[offset : offset + batch])  # type: ignore[arg-type]
    build = time.perf_counter() - start
    times = _latencies(partial(index.search, k=k), query_tokens)
    ragtune: dict[str, Any] = {"build_s": round(build, 2), "add_batch": batch, **times}

    start = time.perf_counter()
    index.add(range(n, n + 1000), extra[:1000])  # type: ignore[arg-type]
    ragtune["add_1000_one_call_s"] = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    index.search(query_tokens[0], k)
    ragtune["first_query_after_add_ms"] = round((time.perf_counter() - start) * 1000, 2)
    start = time.perf_counter()
    for i in range(1000):
        index.add([n + 1000 + i], [extra[1000 + i]])
    ragtune["add_1000_one_by_one_s"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    index.remove(range(0, 2000, 2))
    ragtune["remove_1000_one_call_s"] = round(time.perf_counter() - start, 4)
    ragtune["after_updates"] = _latencies(partial(index.search, k=k), query_tokens[:200])

    directory = Path(tempfile.mkdtemp(prefix="bm25-bench-"))
    try:
        start = time.perf_counter()
        index.save(directory, {"seq": n})
        ragtune["save_s"] = round(time.perf_counter() - start, 2)
        ragtune["disk_mb"] = round(_dir_bytes(directory) / 1e6, 1)
        index.add([n + 5000], [extra[0]])
        start = time.perf_counter()
        index.save(directory, {"seq": n + 1})
        ragtune["save_after_1_add_s"] = round(time.perf_counter() - start, 3)
        del index
        gc.collect()
        start = time.perf_counter()
        loaded, _ = BM25Index.load(directory)
        ragtune["load_s"] = round(time.perf_counter() - start, 3)
        ragtune["after_load"] = _latencies(partial(loaded.search, k=k), query_tokens[:200])
        del loaded
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    gc.collect()
    result["ragtune"] = ragtune

    if n <= bm25s_max:
        start = time.perf_counter()
        retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
        retriever.index(docs, show_progress=False)
        build = time.perf_counter() - start
        times = _latencies(_bm25s_search(retriever, k), query_tokens)
        result["bm25s"] = {
            "build_s": round(build, 2),
            **times,
            "incremental": "not supported: adding documents means a full rebuild",
        }
        del retriever
    else:
        result["bm25s"] = {"skipped": f"--bm25s-max-size {bm25s_max} < {n}"}
    del docs
    gc.collect()
    return result


def _print_table(results: dict[str, Any]) -> None:
    scifact = results["scifact"]
    tok = scifact["tokenize"]
    print(f"tokenize (SciFact): {tok['docs_per_s_cold']} docs/s cold, {tok['docs_per_s_warm']} docs/s warm")
    engines = [("scifact", name, e) for name, e in scifact["engines"].items()]
    for size in results["scale"]:
        engines += [(f"synthetic {size['docs']:,}", name, size[name]) for name in ("ragtune", "bm25s")]
    keys = ("build_s", "p50_ms", "p95_ms", "cpu_p50_ms", "cpu_p95_ms", "queries")
    rows = [[corpus, name, *(e.get(key, "skipped") for key in keys)] for corpus, name, e in engines]
    print_table(rows, ["corpus", "engine", "build s", "p50 ms", "p95 ms", "cpu p50", "cpu p95", "queries"])
    for size in results["scale"]:
        r = size["ragtune"]
        print(
            f"ragtune @ {size['docs']:,}: +1000 docs in one add {r['add_1000_one_call_s'] * 1000:.0f} ms, "
            f"1000 single adds {r['add_1000_one_by_one_s']:.2f} s, remove 1000 {r['remove_1000_one_call_s'] * 1000:.0f}"
            f" ms, save {r['save_s']} s ({r['disk_mb']} MB), load {r['load_s']} s"
        )
    if "ndcg@10_train_qrels" in scifact:
        print(f"SciFact nDCG@10 (train qrels): {scifact['ndcg@10_train_qrels']}")
    print(f"load average at the end: {loadavg()} on {os.cpu_count()} CPUs (cpu columns exclude time stolen by others)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=default_scifact_dir(), help="BEIR-layout SciFact folder")
    parser.add_argument("--sizes", default="100000,1000000", help="synthetic corpus sizes, comma-separated ('' skips)")
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument("--rank-bm25-queries", type=int, default=200, help="queries timed for rank_bm25 (slow)")
    parser.add_argument("--batch", type=int, default=100_000, help="documents per add() when building at scale")
    parser.add_argument("--bm25s-max-size", type=int, default=1_000_000, help="largest synthetic size for bm25s")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bm25_speed.json")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "bm25s": f"{bm25s.__version__} (numpy backend)",
            "cpus": os.cpu_count(),
            "threads": 1,
            "loadavg_at_start": loadavg(),
        },
        "params": {"k1": K1, "b": B, "variant": "lucene", "k": args.k},
    }
    scifact, doc_tokens, query_tokens = bench_scifact(args.data, args.k, args.rank_bm25_queries)
    results["scifact"] = scifact
    results["scale"] = []
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        scale = bench_scale(doc_tokens, query_tokens, size, args.k, args.batch, args.bm25s_max_size)
        scale["peak_rss_mib_so_far"] = peak_rss_mib()
        scale["loadavg_after"] = loadavg()
        results["scale"].append(scale)
    _print_table(results)
    write_json(args.out, results)


if __name__ == "__main__":
    main()
