"""Throughput of `evaluate_rag` with the default judge: 100 samples × faithfulness, answer_relevancy,
context_precision, context_recall and answer_correctness on this CPU (goal: ≤ 10 minutes).

Samples are LiHua-World dev questions with realistic inputs and no LLM needed: the three retrieved contexts are
the question's evidence conversations (or, for the unanswerable ones, three others), the response is two lines of
the first context, the reference the dataset's short answer. With --data, rows of an eval result (its "items",
e.g. bench/eval_rag_lihua.py's full result) are scored instead.

    .venv/bin/python bench/eval_rag_throughput.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LIHUA_DIR, RESULTS_DIR, Phase, loadavg, machine, peak_rss_mib, write_json  # noqa: E402

LIHUA = LIHUA_DIR  # beside the repository as on the development machine; RAGTUNE_LIHUA points elsewhere
METRICS = ["faithfulness", "answer_relevancy", "context_precision", "context_recall", "answer_correctness"]


def lihua_samples(root: Path, n: int) -> list[dict[str, Any]]:
    files = {p.name: p for p in sorted((root / "docs").rglob("*.txt"))}
    names = sorted(files)
    rows = []
    for i, line in enumerate((root / "questions-dev.jsonl").read_text(encoding="utf-8").splitlines()[:n]):
        q = json.loads(line)
        evidence = q["evidence"] or [names[(i * 7 + k) % len(names)] for k in range(3)]
        contexts = [files[name].read_text(encoding="utf-8").strip() for name in evidence[:3]]
        lines = [x for x in contexts[0].splitlines()[1:] if x.strip()]
        rows.append({"id": str(q["id"]), "user_input": q["question"], "retrieved_contexts": contexts,
                     "retrieved_context_ids": evidence[:3], "response": " ".join(lines[:2]),
                     "reference": q["answer"], "reference_context_ids": q["evidence"],
                     "answerable": q["type"] != "Null"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--data", type=Path, default=None, help="an eval result JSON whose items to score")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "eval_rag_throughput.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    if args.data:
        rows = json.loads(args.data.read_text())["items"][: args.n]
        source = str(args.data)
    else:
        rows = lihua_samples(LIHUA, args.n)
        source = "LiHua-World dev questions, evidence conversations as contexts (see the docstring)"
    start_load = loadavg()
    with Phase() as imports:
        from ragtune.embed import load_embedder
        from ragtune.evaluate import evaluate_rag
    with Phase() as load:
        embedder = load_embedder("all-MiniLM-L6-v2")
    with Phase() as run:
        result = evaluate_rag(rows, metrics=METRICS, embedder=embedder, cache=False)
    # Without ids, context precision and recall judge every context against the reference's claims instead.
    text_rows = [{k: v for k, v in row.items() if not k.endswith("context_ids")} for row in rows]
    with Phase() as text_run:
        text_result = evaluate_rag(text_rows, metrics=METRICS, embedder=embedder, cache=False)
    total = imports.wall + load.wall + run.wall
    out = {
        "samples": len(rows), "metrics": METRICS, "source": source, "judge": result["config"]["judge"],
        "embedder": result["config"]["embedder"],
        "seconds": {"total": round(total, 2), "imports": round(imports.wall, 2), "load_embedder": round(load.wall, 2),
                    "evaluate": round(run.wall, 2)},
        "cpu_seconds_evaluate": round(run.cpu, 2),
        "per_metric_ms": result["timings_ms"]["per_metric"],
        "samples_per_second": round(len(rows) / run.wall, 2),
        "goal_seconds": 600, "meets_goal": total <= 600,
        "means": result["metrics"],
        "without_ids": {"evaluate_seconds": round(text_run.wall, 2), "total_seconds": round(
            imports.wall + load.wall + text_run.wall, 2), "per_metric_ms": text_result["timings_ms"]["per_metric"],
                        "means": text_result["metrics"]},
        "peak_rss_mib": peak_rss_mib(),
        "loadavg": {"start": start_load, "end": loadavg()}, "machine": machine(), "measured_at": time.ctime(),
    }
    write_json(args.out, out)
    print(json.dumps({k: out[k] for k in ("samples", "seconds", "per_metric_ms", "meets_goal")}, indent=1))


if __name__ == "__main__":
    main()
