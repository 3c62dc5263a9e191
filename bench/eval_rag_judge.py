"""How well `faithfulness` separates faithful answers from unfaithful ones: ROC AUC over the labelled judge set
(tests/fixtures/judge_labels.jsonl: English and Chinese answers from the handbook fixtures, the FAQ and news
fixtures and LiHua-World, each supported, or with a changed number, a swapped name, an added unsupported claim,
or invented), overall, per language and per kind of error, with every misjudged row and the judge's reason.

    .venv/bin/python bench/eval_rag_judge.py                       # the default judge (no LLM)
    .venv/bin/python bench/eval_rag_judge.py --judge openai --judge-model M --judge-base-url URL
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, Phase, git_state, loadavg, write_json  # noqa: E402

from ragtune.evaluate import evaluate_rag  # noqa: E402
from ragtune.evaluate.stats import roc_auc  # noqa: E402

LABELS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "judge_labels.jsonl"
KINDS = ("changed_number", "swapped_name", "added_claim", "invented")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default="default")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--judge-base-url", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
    with Phase() as run:
        result = evaluate_rag(rows, metrics=["faithfulness"], judge=args.judge, judge_model=args.judge_model,
                              judge_base_url=args.judge_base_url, cache=False)
    scores = [item["faithfulness"] for item in result["items"]]
    labels = [row["label"] for row in rows]

    def auc(keep: list[int]) -> float:
        return round(roc_auc([scores[i] for i in keep], [labels[i] for i in keep]), 4)

    everything = list(range(len(rows)))
    misjudged = []
    for row, item, score in zip(rows, result["items"], scores, strict=True):
        if (row["label"] and score < 1) or (not row["label"] and score > 0):
            claims = item["explanation"]["faithfulness"].get("claims", [])
            misjudged.append({"id": row["id"], "kind": row["kind"], "language": row["language"], "score": score,
                              "response": row["response"],
                              "claims": [{k: c[k] for k in ("claim", "supported", "score", "reason")} for c in claims]})
    out = {
        "set": str(LABELS.relative_to(LABELS.parents[2])), "rows": len(rows), "positives": sum(labels),
        "judge": result["config"]["judge"], "goal_auc": 0.90,
        "auc": auc(everything),
        "auc_by_language": {lang: auc([i for i in everything if rows[i]["language"] == lang]) for lang in ("en", "zh")},
        "auc_by_kind": {kind: auc([i for i in everything if rows[i]["kind"] in (kind, "supported")]) for kind in KINDS},
        "mean_faithfulness": {kind: round(sum(scores[i] for i in everything if rows[i]["kind"] == kind)
                                          / sum(rows[i]["kind"] == kind for i in everything), 4)
                              for kind in ("supported", *KINDS)},
        "misjudged": misjudged, "seconds": round(run.wall, 2), "loadavg": loadavg(), "commit": git_state(),
    }
    name = "eval_rag_judge.json" if args.judge == "default" else f"eval_rag_judge_{args.judge}.json"
    write_json(args.out or RESULTS_DIR / name, out)
    print(json.dumps({k: out[k] for k in ("judge", "auc", "auc_by_language", "auc_by_kind")}, indent=1))


if __name__ == "__main__":
    main()
