"""Two-hop questions on invented documents (tests/fixtures/graph/twohop): both supporting chunks in the top 5? And
answers, quoted (extractive, no model) and in answer mode auto with the default model: does the answer hold the
expected one, is it refused, or wrong?

33 questions, 18 English and 15 Chinese, over 66 one-paragraph documents. Each question names something in the
first document ("the project led by Ada Park"); the second document (where "the Lumen team works from the Harbour
office") shares no key entity with the question, only the bridge ("Lumen") with the first. Three chains of each
kind share their wording, so words alone cannot tell the right second document from its two look-alikes.

    .venv/bin/python bench/graph_twohop.py [--fusion rrf --out /tmp/twohop-rrf.json]

Before/after a change to answering: PYTHONPATH=<worktree of the old commit>/src .venv/bin/python bench/graph_twohop.py
--out /tmp/twohop-before.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, RESULTS_DIR, loadavg, machine, percentiles, print_table, write_json  # noqa: E402

from ragtune.kb import KnowledgeBase  # noqa: E402

FIXTURE = BENCH_DIR.parent / "tests" / "fixtures" / "graph" / "twohop"
MODES = ("hybrid", "graph", "auto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fusion", choices=("dbsf", "rrf"), help="default: the setting's default")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "graph_twohop.json")
    args = ap.parse_args()
    settings = {"fusion": args.fusion} if args.fusion else {}
    questions = json.loads((FIXTURE / "questions.json").read_text(encoding="utf-8"))
    results: dict[str, dict[str, object]] = {}
    per_question: dict[str, dict[str, bool]] = defaultdict(dict)
    with tempfile.TemporaryDirectory() as tmp, KnowledgeBase.open(Path(tmp) / "kb", create=True, graph=True,
                                                                              **settings) as kb:
        kb.ingest(FIXTURE / "docs")
        for mode in MODES:
            found = {"en": 0, "zh": 0}
            first_hop = 0
            times = []
            routes: dict[str, int] = defaultdict(int)
            for q in questions:
                started = time.perf_counter()
                result = kb.retrieve(q["question"], 5, mode=mode)
                times.append((time.perf_counter() - started) * 1000)
                names = {Path(h.source).name for h in result.hits}
                both = all(e in names for e in q["evidence"])
                found[q["language"]] += both
                first_hop += q["evidence"][0] in names
                per_question[q["id"]][mode] = both
                if result.route:
                    routes[result.route.decision] += 1
            answers: dict[str, dict[str, Any]] = {}
            for answer_mode in ("extractive", "auto"):
                tally: dict[str, Any] = {"correct": 0, "refused": 0, "wrong": 0}
                answer_times = []
                for q in questions:
                    started = time.perf_counter()
                    answer = kb.ask(q["question"], mode=mode, answer_mode=answer_mode)
                    answer_times.append((time.perf_counter() - started) * 1000)
                    verdict = ("refused" if answer.refused else
                               "correct" if q["answer"].lower() in answer.answer.lower() else "wrong")
                    tally[verdict] += 1
                    per_question[q["id"]][f"{mode}_{answer_mode}"] = f"{verdict} ({answer.mode})"
                answers[answer_mode] = {**tally, "latency_ms": percentiles(answer_times)}
            total = {lang: sum(q["language"] == lang for q in questions) for lang in ("en", "zh")}
            results[mode] = {"both_in_top5": sum(found.values()), "questions": len(questions),
                             "en": f"{found['en']}/{total['en']}", "zh": f"{found['zh']}/{total['zh']}",
                             "first_hop_in_top5": first_hop, "latency_ms": percentiles(times),
                             "answers": answers,
                             **({"routes": dict(routes)} if routes else {})}
    write_json(args.out, {
        "fixture": str(FIXTURE.relative_to(BENCH_DIR.parent)), "fusion": kb.settings.fusion, "modes": results,
        "per_question": per_question,
        "loadavg": loadavg(), "machine": machine(),
    })
    print_table([[m, r["both_in_top5"], r["en"], r["zh"], r["first_hop_in_top5"],
                  *(f"{r['answers'][a]['correct']}/{r['answers'][a]['refused']}/{r['answers'][a]['wrong']}"
                    for a in ("extractive", "auto"))] for m, r in results.items()],
                ["mode", f"both in top 5 (of {len(questions)})", "English", "Chinese", "first hop in top 5",
                 "quoted: correct/refused/wrong", "auto (bundled model)"])


if __name__ == "__main__":
    main()
