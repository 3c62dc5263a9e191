"""Calibrate the answer pipeline's refusal gate on SciFact: how high is the best dense score when the
knowledge base holds the answer, and how high when it does not?

Answerable: each train query against the full KB. Not answerable (a hard, same-domain proxy): the same
query with its relevant documents filtered out. Off-topic: general-knowledge questions the corpus cannot
answer. The gate is set at the 5th percentile of the answerable scores (≈95 % of answerable questions
pass); the script reports what share of each other set it refuses at that threshold.

    .venv/bin/python bench/refusal_calibration.py --kb /tmp/evals/scifact_256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import json  # noqa: E402

from _common import RESULTS_DIR, default_scifact_dir, loadavg, write_json  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.ingest import document_id  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.rag.citations import support  # noqa: E402

OFF_TOPIC = [
    "What is the capital of Peru?", "Who won the football World Cup in 2018?", "How do I bake sourdough bread?",
    "What is the refund window for enterprise plans?", "How often must API keys be rotated?",
    "Which portal do employees use to book flights?", "What is the boiling point of ethanol?",
    "How many moons does Jupiter have?", "What time does the canteen open?", "Who wrote Pride and Prejudice?",
    "What is the best programming language for beginners?", "How do I reset my router?",
]


def best_dense(kb: KnowledgeBase, query: str, exclude: list[str] | None = None) -> tuple[float, float]:
    """Best dense score and the best hit's lexical coverage of the query."""
    flt = {"document_id": {"$nin": exclude}} if exclude else None
    hits = kb.search(query, k=5, mode="hybrid", filter=flt)
    dense = max((h.scores.get("dense", 0.0) for h in hits), default=0.0)
    lexical = max((support(query, h.text) for h in hits), default=0.0)
    return dense, lexical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, required=True, help="a SciFact KB built by 'ragtune eval retrieval'")
    parser.add_argument("--beir", type=Path, default=default_scifact_dir())
    parser.add_argument("--split", default="train")
    parser.add_argument("--percentile", type=float, default=5.0)
    args = parser.parse_args()

    data = load_beir(args.beir, args.split)
    name = args.beir.resolve().name
    start_load = loadavg()
    with KnowledgeBase.open(args.kb) as kb:
        answerable, held_out = [], []
        for qid, text in data.queries.items():
            relevant = [document_id(f"beir:{name}/{d}") for d, rel in data.qrels[qid].items() if rel > 0]
            answerable.append(best_dense(kb, text))
            held_out.append(best_dense(kb, text, exclude=relevant))
        off_topic = [best_dense(kb, q) for q in OFF_TOPIC]
        embedder = kb.stats()["embedder"]
    a = np.array([d for d, _ in answerable])
    h = np.array([d for d, _ in held_out])
    o = np.array([d for d, _ in off_topic])
    threshold = float(np.percentile(a, args.percentile))

    def refused(pairs: list[tuple[float, float]]) -> float:
        # The pipeline refuses when the best hit lacks most query terms AND the dense score is below the gate.
        return round(float(np.mean([d < threshold and lex < 0.5 for d, lex in pairs])), 3)

    result = {
        "embedder": embedder, "split": args.split, "queries": len(a), "percentile": args.percentile,
        "threshold": round(threshold, 4),
        "dense_best": {
            "answerable": {"p5": round(float(np.percentile(a, 5)), 4), "median": round(float(np.median(a)), 4)},
            "relevant_removed": {"p5": round(float(np.percentile(h, 5)), 4), "median": round(float(np.median(h)), 4)},
            "off_topic": {"max": round(float(o.max()), 4), "median": round(float(np.median(o)), 4)},
        },
        "refused_share": {
            "answerable": refused(answerable), "relevant_removed": refused(held_out), "off_topic": refused(off_topic),
        },
        "loadavg": {"start": start_load, "end": loadavg()},
    }
    write_json(RESULTS_DIR / f"refusal_calibration_{embedder}.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
