"""Turnaround: from 1,000 feedback events to a gated decision for the embedder and reranker stages, on SciFact.

A copy of the SciFact KB of bench/loop_scifact.py (built there once) gets the dev queries rated and `loop init`
(the frozen eval set), then 1,000 events on train-split queries: 567 👍 answers citing a relevant chunk, 300 👎
(answers citing an irrelevant chunk, no correction) and 133 repeated 👍 ratings of answers already rated. The
clock runs over one `ragtune loop run` (both stages: datasets, mining, training, staging, measuring, deciding);
the goal is one hour on this CPU. The LLM stage's time is measured by bench/loop_llm.py.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/loop_turnaround.py
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, write_json  # noqa: E402
from loop_scifact import RECIPE, SPLIT_DIR, Bench, loop_cli, qrels_of, rate  # noqa: E402

from ragtune.feedback import FeedbackStore  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.types import Answer, Citation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--base-work", type=Path, default=Path("/tmp/ragtune-loop-bench/scifact"),
                    help="where bench/loop_scifact.py keeps its built KB (work/base)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ragtune-loop-bench/turnaround"))
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "loop_turnaround.json")
    args = ap.parse_args()
    base = Bench(argparse.Namespace(beir=args.beir, work=args.base_work, out=None))
    base.step("build", base.build_base)
    args.work.mkdir(parents=True, exist_ok=True)
    state_path = args.work / "bench.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    kb_path = args.work / "kb"

    def step(key: str, action: Any) -> Any:
        if key not in state:
            started = time.perf_counter()
            state[key] = {"value": action(), "seconds": round(time.perf_counter() - started, 1), "loadavg": loadavg()}
            state_path.write_text(json.dumps(state, indent=2) + "\n")
            print(key, json.dumps(state[key])[:400], flush=True)
        return state[key]["value"]

    def copy() -> str:
        shutil.rmtree(kb_path, ignore_errors=True)
        shutil.copytree(args.base_work / "base", kb_path)
        return str(kb_path)

    dataset, name = base.dataset, base.name
    parts = {p: (SPLIT_DIR / f"{p}_queries.txt").read_text().split() for p in ("train", "dev")}

    def rate_queries(queries: list[str], tag: str) -> int:
        with KnowledgeBase.open(kb_path) as kb, FeedbackStore(kb_path) as store:
            return sum(rate(kb, store, dataset.queries[q], qrels_of(dataset, q), f"{tag}-{q}", name)
                       for q in queries if qrels_of(dataset, q))

    def events() -> dict[str, int]:
        train = [q for q in parts["train"] if qrels_of(dataset, q)]
        rng = random.Random(3)
        counts = {"up": rate_queries(train, "t"), "down": 0, "repeated_up": 0}
        with KnowledgeBase.open(kb_path) as kb, FeedbackStore(kb_path) as store:
            for n, q in enumerate(rng.sample(train, 300)):
                hits = kb.retrieve(dataset.queries[q], 30, rerank=False).hits
                wrong = hits[-1]  # ranked low: an answer from the wrong passage
                answer = Answer(id=f"w-{n}-{q}", question=dataset.queries[q], answer=f"{wrong.text[:120]} [1].",
                                grounded=True, sources=[wrong], citations=[Citation(
                                    number=1, chunk_id=wrong.chunk_id, document_id=wrong.document_id,
                                    source=wrong.source)])
                store.record_answer(answer)
                store.add(answer.id, "down")
                counts["down"] += 1
            for q in rng.sample(train, 1000 - counts["up"] - counts["down"]):
                store.add(f"t-{q}", "up")
                counts["repeated_up"] += 1
        return counts

    step("copy", copy)
    step("dev_feedback", lambda: rate_queries(parts["dev"], "dev"))
    recipe = args.work / "loop.toml"
    recipe.write_text(RECIPE)
    step("init", lambda: loop_cli(kb_path, "init", "--recipe", str(recipe))["evalset"])
    counts = step("events", events)
    run = step("run", lambda: loop_cli(kb_path, "run"))
    wall = state["run"]["seconds"]
    stages = {name: {"outcome": phase.get("outcome"), "why": phase.get("verdict", {}).get("reasons"),
                     "rows": phase.get("rows"), "hygiene": phase.get("hygiene"),
                     "seconds_by_phase": phase.get("seconds"),
                     "seconds": round(sum((phase.get("seconds") or {}).values()), 1)}
              for name, phase in run["phases"].items()}
    write_json(args.out, {
        "what": "1,000 feedback events on SciFact train-split queries to a gated decision (embedder and reranker "
                "stages) in one 'ragtune loop run'",
        "events": {**counts, "total": sum(counts.values())}, "run": run["run"], "wall_s": wall,
        "goal_s": 3600, "met": wall <= 3600, "stages": stages, "loadavg_at_end": state["run"]["loadavg"],
        "recipe": RECIPE, "machine": machine(), "loadavg": loadavg(),
    })


if __name__ == "__main__":
    main()
