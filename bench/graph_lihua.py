"""LiHua-World: evidence recall@5/@10 per question type for hybrid, graph and auto retrieval, refusal of the
unanswerable questions, and (with --answers) answer accuracy with the default model per mode.

The corpus (443 chat logs) is ingested once with ``graph = true`` into WORKDIR/lihua-graph (reused by
bench/graph_cost.py). For each of the 319 dev questions and each mode the best 10 chunks are retrieved:

- evidence recall@k: share of a question's evidence files among the files of its top-k chunks, averaged per
  type (Single, Multi); ``all@10``: share of questions with every evidence file in the top 10.
- refusal (Null questions are the positives): the answer pipeline's own gate (best dense score below the
  calibrated threshold and no top-3 chunk holding half the question's terms, on the hits of that mode), and for
  auto also the router's advice (``route.refuse``). Precision, recall and F1 of refusing; ``refusal_gate`` is the
  gate alone — what the answer pipeline does, since it does not act on the router's advice.
- ``--answers``: ``kb.ask(question, mode=...)`` with the bundled SmolLM2-135M for every question; each answer is
  appended to WORKDIR/answers-MODE.jsonl as it comes, so an interrupted run resumes. Accuracy as
  bench/answer_accuracy.py judges (``_common.lihua_correct``; since 2026-12-05 — before, a Yes/No reference matched
  the answer's first yes/no anywhere, not its first word): a Null question is correct when refused, refused
  answers to answerable questions are wrong.

    flock /tmp/ragtune-heavy.lock nice -n 5 env OMP_NUM_THREADS=1 .venv/bin/python bench/graph_lihua.py [--answers]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LIHUA_DIR, RESULTS_DIR, lihua_correct, loadavg, machine, percentiles, print_table, write_json  # noqa: E402

MODES = ("hybrid", "graph", "auto")
TYPES = ("Single", "Multi", "Null")
# MiniRAG README, "Overall Performance Table" (LLM-judged accuracy / error rate, %).
MINIRAG = {
    "Phi-3.5-mini-instruct": {"NaiveRAG": [41.22, 23.20], "LightRAG": [39.81, 25.39], "MiniRAG": [53.29, 23.35]},
    "Qwen2.5-3B-Instruct": {"NaiveRAG": [43.73, 24.14], "LightRAG": [39.18, 28.68], "MiniRAG": [48.75, 26.02]},
    "gpt-4o-mini": {"NaiveRAG": [46.55, 19.12], "LightRAG": [56.90, 20.85], "MiniRAG": [54.08, 19.44],
                    "GraphRAG": [35.27, 37.77]},
}


def lihua_questions() -> list[dict[str, Any]]:
    """The 319 dev questions (id, question, answer, type Single/Multi/Null, evidence file names)."""
    with open(LIHUA_DIR / "questions-dev.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ragtune-graph-bench"))
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable; default all three")
    parser.add_argument("--answers", action="store_true", help="also answer every question with the default LLM")
    parser.add_argument("--answer-mode", action="append", choices=MODES,
                        help="with --answers: only these modes (repeatable; default: every retrieval mode)")
    parser.add_argument("--set", action="append", default=[], help="setting overrides, e.g. graph_weight=0.5")
    parser.add_argument("--ceiling", action="store_true",
                        help="also the evidence recall at 20, 30 and 50 (a second retrieval of 50 per question): what "
                             "a perfect reordering of that many candidates could reach at 10")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "graph_lihua.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from ragtune.kb import KnowledgeBase
    from ragtune.settings import parse_overrides

    modes = args.mode or list(MODES)
    questions = lihua_questions()
    kb_path = args.workdir / "lihua-graph"
    overrides = parse_overrides(args.set)
    started = time.perf_counter()
    with KnowledgeBase.open(kb_path, create=True, graph=True, **overrides) as kb:
        if kb.stats()["documents"] == 0 or (kb.graph and kb.graph.stats()["chunks_missing"]):
            kb.ingest(LIHUA_DIR / "docs")
            kb.build_graph()
        graph_stats = kb.graph.stats() if kb.graph else {}
        retrieval = {mode: evaluate_retrieval(kb, questions, mode) for mode in modes}
        if args.ceiling:
            for mode in modes:
                retrieval[mode]["ceiling"] = evaluate_ceiling(kb, questions, mode)
        answer_modes = args.answer_mode or modes
        answers = ({mode: evaluate_answers(kb, questions, mode, args.workdir) for mode in answer_modes}
                   if args.answers else {})
    result = {
        "data": str(LIHUA_DIR), "questions": {t: sum(q["type"] == t for q in questions) for t in TYPES},
        "settings": overrides, "kb": str(kb_path), "graph": graph_stats, "retrieval": retrieval,
        "answers": answers, "minirag_readme": MINIRAG, "seconds": round(time.perf_counter() - started, 1),
        "loadavg": loadavg(), "machine": machine(),
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if not args.answers and previous.get("answers"):
        result["answers"] = previous["answers"]  # a retrieval-only rerun keeps the (hour-long) answer numbers
    write_json(args.out, result)
    rows = [[mode, *[retrieval[mode][t][f"recall@{k}"] for t in ("Single", "Multi") for k in (5, 10)],
             retrieval[mode]["Multi"]["all@10"], retrieval[mode]["refusal"]["f1"], retrieval[mode]["latency_ms"]["p50"]]
            for mode in modes]
    print_table(rows, ["mode", "single R@5", "single R@10", "multi R@5", "multi R@10", "multi all@10",
                       "refusal F1", "p50 ms"])
    for mode, a in result["answers"].items():
        print(mode, {t: a["accuracy"][t] for t in (*TYPES, "overall")})


def evaluate_retrieval(kb: Any, questions: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    from ragtune.rag.citations import support
    from ragtune.rag.pipeline import LEXICAL_GATE, REFUSAL_GATES

    threshold, languages = REFUSAL_GATES[kb.settings.embedder]
    per_type: dict[str, list[dict[str, float]]] = defaultdict(list)
    refusals: list[tuple[bool, bool]] = []  # (unanswerable, refused)
    gated: list[tuple[bool, bool]] = []  # (unanswerable, refused by the gate alone)
    routes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    times = []
    for q in questions:
        t = time.perf_counter()
        result = kb.retrieve(q["question"], 10, mode=mode)
        times.append((time.perf_counter() - t) * 1000)
        files = [Path(h.source).name for h in result.hits]
        if q["evidence"]:
            evidence = set(q["evidence"])
            per_type[q["type"]].append({
                "recall@5": len(evidence & set(files[:5])) / len(evidence),
                "recall@10": len(evidence & set(files[:10])) / len(evidence),
                "all@10": float(evidence <= set(files[:10])),
            })
        # The answer pipeline's gate on the best three hits (its context), as in rag/pipeline.py.
        top = result.hits[:3]
        dense = [h.scores["dense"] for h in top if "dense" in h.scores]
        lexical = max((support(q["question"], h.text) for h in top), default=0.0) >= LEXICAL_GATE
        gate = not top or (not lexical and (not dense or max(dense) < threshold))
        refused = gate or bool(result.route and result.route.refuse)
        refusals.append((q["type"] == "Null", refused))
        gated.append((q["type"] == "Null", gate))
        if result.route:
            routes[q["type"]][result.route.decision + ("+refuse" if result.route.refuse else "")] += 1
    out: dict[str, Any] = {}
    for qtype, rows in per_type.items():
        out[qtype] = {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in rows[0]} | {"n": len(rows)}
    out["refusal"] = _f1(refusals)
    out["refusal_gate"] = _f1(gated)
    out["latency_ms"] = {**percentiles(times), "loadavg": loadavg()}
    single = [t for t, q in zip(times, questions, strict=True) if q["type"] == "Single"]
    out["latency_ms_single"] = percentiles(single)
    if routes:
        out["routes"] = {t: dict(v) for t, v in routes.items()}
    return out


def evaluate_ceiling(kb: Any, questions: list[dict[str, Any]], mode: str) -> dict[str, dict[str, float]]:
    """Evidence recall@20/30/50 per type from one retrieval of 50: the most a reranker of that many candidates could
    bring into the top 10 (when the evidence fits in 10)."""
    per_type: dict[str, list[dict[str, float]]] = defaultdict(list)
    for q in questions:
        if not q["evidence"]:
            continue
        files = [Path(h.source).name for h in kb.retrieve(q["question"], 50, mode=mode).hits]
        evidence = set(q["evidence"])
        per_type[q["type"]].append({f"recall@{k}": len(evidence & set(files[:k])) / len(evidence)
                                    for k in (20, 30, 50)})
    return {t: {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in rows[0]} for t, rows in per_type.items()}


def _f1(pairs: list[tuple[bool, bool]]) -> dict[str, float]:
    tp = sum(1 for positive, refused in pairs if positive and refused)
    fp = sum(1 for positive, refused in pairs if not positive and refused)
    fn = sum(1 for positive, refused in pairs if positive and not refused)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "refused_unanswerable": tp, "refused_answerable": fp}


def evaluate_answers(kb: Any, questions: list[dict[str, Any]], mode: str, workdir: Path) -> dict[str, Any]:
    path = workdir / f"answers-{mode}.jsonl"
    done: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done[row["id"]] = row
    with open(path, "a", encoding="utf-8") as out:
        for n, q in enumerate(questions, 1):
            if q["id"] in done:
                continue
            t = time.perf_counter()
            answer = kb.ask(q["question"], mode=mode)
            route = kb.retrieve(q["question"], 10, mode=mode).route if mode == "auto" else None
            row = {"id": q["id"], "type": q["type"], "answer": answer.answer, "refused": answer.refused,
                   "route_refuse": bool(route and route.refuse), "route": route.decision if route else mode,
                   "seconds": round(time.perf_counter() - t, 2)}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            done[q["id"]] = row
            print(f"{mode} {n}/{len(questions)} {row['seconds']}s", flush=True)
    scored: dict[str, list[float]] = defaultdict(list)
    with_router: dict[str, list[float]] = defaultdict(list)
    refusals, refusals_router = [], []
    for q in questions:
        row = done[q["id"]]
        scored[q["type"]].append(correct(q, row["answer"], row["refused"]))
        refused = row["refused"] or row["route_refuse"]
        with_router[q["type"]].append(correct(q, row["answer"], refused))
        refusals.append((q["type"] == "Null", row["refused"]))
        refusals_router.append((q["type"] == "Null", refused))

    def summary(table: dict[str, list[float]]) -> dict[str, float]:
        everything = [v for rows in table.values() for v in rows]
        answerable = [v for t in ("Single", "Multi") for v in table[t]]
        return {**{t: round(100 * sum(table[t]) / len(table[t]), 2) for t in TYPES},
                "answerable": round(100 * sum(answerable) / len(answerable), 2),
                "overall": round(100 * sum(everything) / len(everything), 2)}

    out = {"accuracy": summary(scored), "refusal": _f1(refusals), "answers_file": str(path),
           "seconds_per_answer": percentiles([done[q["id"]]["seconds"] for q in questions])}
    if mode == "auto":
        out["accuracy_with_router_refusal"] = summary(with_router)
        out["refusal_with_router"] = _f1(refusals_router)
    return out


def correct(question: dict[str, Any], answer: str, refused: bool) -> float:
    """A Null question is correct when refused; an answerable one when not refused and the answer states the
    reference (``_common.lihua_correct``, as bench/answer_accuracy.py judges)."""
    if question["type"] == "Null":
        return float(refused)
    return float(not refused and lihua_correct(answer, question["answer"]))


if __name__ == "__main__":
    main()
