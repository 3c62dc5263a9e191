"""LiHua-World dev (319 questions) answered by the default pipeline and model, scored by `evaluate_rag`:
evidence recall@5/@10 (ID-based context recall against the evidence files), answer correctness, faithfulness,
refusal accuracy and false-refusal rate, per question type; then the same answers scored a second time to
check that two runs are identical, and every item checked for NaN/null.

Heavy (SmolLM2 answers 319 questions, ~30 min on this CPU): run it under the shared lock. Answers are cached
per commit, so an interrupted run resumes and a re-run after a pipeline change answers afresh:

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/eval_rag_lihua.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LIHUA_DIR, RESULTS_DIR, git_state, loadavg, machine, write_json  # noqa: E402

from ragtune.evaluate import evaluate_rag  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.rag.claims import strip_markers  # noqa: E402

LIHUA = LIHUA_DIR  # beside the repository as on the development machine; RAGTUNE_LIHUA points elsewhere
METRICS = ["context_recall@5", "context_recall@10", "context_recall", "context_precision", "answer_correctness",
           "faithfulness", "answer_relevancy", "citation_precision", "citation_recall", "refusal_accuracy",
           "false_refusal_rate"]
# MiniRAG README, "Overall Performance Table" (LiHua-World, all questions): accuracy / error in %, judged by an LLM.
MINIRAG = {
    "Phi-3.5-mini-instruct (3.8B)": {"NaiveRAG": [41.22, 23.20], "LightRAG": [39.81, 25.39],
                                     "MiniRAG": [53.29, 23.35]},
    "Qwen2.5-3B-Instruct": {"NaiveRAG": [43.73, 24.14], "LightRAG": [39.18, 28.68], "MiniRAG": [48.75, 26.02]},
    "gpt-4o-mini": {"NaiveRAG": [46.55, 19.12], "LightRAG": [56.90, 20.85], "MiniRAG": [54.08, 19.44],
                    "GraphRAG": [35.27, 37.77]},
}


def questions(path: Path) -> list[dict[str, Any]]:
    """LiHua-World rows with RAGAS's field names; 'Null' questions are the unanswerable ones."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        rows.append({"id": str(q["id"]), "type": q["type"], "user_input": q["question"], "reference": q["answer"],
                     "reference_context_ids": q["evidence"], "answerable": q["type"] != "Null"})
    return rows


def reference_in_response(items: list[dict[str, Any]]) -> dict[str, float]:
    """Share of answerable items whose response contains the short reference answer (case-insensitive): the
    closest string measure to MiniRAG's judged accuracy, per type."""
    out: dict[str, list[bool]] = {}
    for item in items:
        if item["answerable"] is False:
            continue
        hit = item["reference"].casefold() in strip_markers(item["response"]).casefold()
        out.setdefault(item["type"], []).append(hit and not item["refused"])
        out.setdefault("all", []).append(hit and not item["refused"])
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(out.items())}


def bad_numbers(items: list[dict[str, Any]], metrics: list[str]) -> int:
    """Metric values that are missing, null, NaN or outside [0, 1]."""
    bad = 0
    for item in items:
        for name in metrics:
            value = item.get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or not 0 <= value <= 1:
                bad += 1
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=LIHUA)
    parser.add_argument("--kb", type=Path, default=Path("/tmp/evals/lihua_kb"))
    parser.add_argument("--cache", type=Path, default=None,
                        help="answer cache (default: /tmp/evals/lihua_eval_cache/<commit>)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "eval_rag_lihua.json")
    parser.add_argument("--full", type=Path, default=Path("/tmp/evals/eval_rag_lihua_full.json"),
                        help="where the full result (every item with its explanation) and the HTML report go")
    parser.add_argument("--same-as", type=Path, default=None,
                        help="a full result of an earlier run (another process): check the items are identical")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    state = git_state()
    cache = args.cache or Path("/tmp/evals/lihua_eval_cache") / (state["commit"] + ("-dirty" if state["src_dirty"]
                                                                                    else ""))
    rows = questions(args.data / "questions-dev.jsonl")[: args.limit]
    started_load = loadavg()
    with KnowledgeBase.open(args.kb, create=True, num_threads=1) as kb:
        t = time.perf_counter()
        ingest = kb.ingest([args.data / "docs"]).to_dict()
        ingest_s = time.perf_counter() - t

        def progress(stage: str, done: int, total: int) -> None:
            if done == total or done % 20 == 0:
                print(f"{stage}: {done}/{total}", flush=True)

        t = time.perf_counter()
        first = evaluate_rag(kb=kb, questions=rows, metrics=METRICS, by="type", cache=cache, on_progress=progress,
                             report=args.full.with_suffix(".html"))
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        second = evaluate_rag(kb=kb, questions=rows, metrics=METRICS, by="type", cache=cache)
        second_s = time.perf_counter() - t
        stats = kb.stats()
    args.full.parent.mkdir(parents=True, exist_ok=True)
    args.full.write_text(json.dumps(first, ensure_ascii=False, indent=1))
    same = [a == b for a, b in zip(first["items"], second["items"], strict=True)]
    earlier = json.loads(args.same_as.read_text()) if args.same_as else None
    result = {
        "dataset": "LiHua-World dev", "questions": len(rows),
        "types": {t: sum(r["type"] == t for r in rows) for t in ("Single", "Multi", "Null")},
        "commit": state, "answer_cache": str(cache), "kb": str(args.kb), "chunks": stats["chunks"],
        "embedder": stats["embedder"], "model": first["config"].get("model"), "judge": first["config"]["judge"],
        "metrics": first["metrics"], "counts": first["counts"], "by_type": first["groups"]["type"],
        "reference_in_response": reference_in_response(first["items"]),
        "latency_ms": first.get("latency_ms", {}),
        "determinism": {"identical_items": sum(same), "items": len(same),
                        "identical_metrics": first["metrics"] == second["metrics"],
                        **({"earlier_run": str(args.same_as),
                            "identical_to_earlier_run": earlier["items"] == first["items"]} if earlier else {})},
        "nan_null_or_out_of_range": bad_numbers(first["items"] + second["items"], METRICS),
        "refused": sum(i["refused"] for i in first["items"]),
        "timings_s": {"ingest": round(ingest_s, 1), "first_run": round(first_s, 1), "second_run": round(second_s, 1),
                      "scoring_ms": first["timings_ms"].get("per_metric")},
        "ingest": ingest, "loadavg": {"start": started_load, "end": loadavg()}, "machine": machine(),
        "full_result": str(args.full), "report": str(args.full.with_suffix(".html")),
        "minirag_readme_accuracy_error_percent": MINIRAG,
    }
    write_json(args.out, result)
    print(json.dumps({"metrics": result["metrics"], "by_type": {k: v["metrics"] for k, v in result["by_type"].items()},
                      "determinism": result["determinism"], "nan": result["nan_null_or_out_of_range"]}, indent=1))


if __name__ == "__main__":
    main()
