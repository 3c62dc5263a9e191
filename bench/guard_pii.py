"""PII detection quality on the synthetic EN + ZH set: span recall and precision per kind and language.

    python bench/guard_pii.py [--set tests/fixtures/guard/pii_set.jsonl] [--out bench/results/guard_pii.json]

A gold span counts as found when a finding of the same kind covers at least half of it; ``redaction_recall``
counts it when any finding covers it (what redaction needs). Precision: findings that match a gold span of their
kind, over all findings (negatives hold look-alike numbers whose checks fail, dates, versions, prices).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, loadavg, machine, write_json

from ragtune.guard.pii import find_pii

ROOT = Path(__file__).resolve().parents[1]


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def score(items: list[dict[str, Any]]) -> dict[str, Any]:
    tp: Counter[str] = Counter()
    gold_n: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    pred_ok: Counter[str] = Counter()
    covered = 0
    misses: list[dict[str, Any]] = []
    false_hits: list[dict[str, Any]] = []
    started = time.perf_counter()
    for item in items:
        found = find_pii(item["text"])
        for span in item["spans"]:
            key = f"{span['kind']}/{item['lang']}"
            gold_n[span["kind"]] += 1
            gold_n[key] += 1
            g = (span["start"], span["end"])
            need = (g[1] - g[0]) / 2
            if any(m.kind == span["kind"] and _overlap(g, (m.start, m.end)) >= need for m in found):
                tp[span["kind"]] += 1
                tp[key] += 1
            else:
                misses.append({"id": item["id"], "kind": span["kind"], "text": span["text"],
                               "found": [(m.kind, m.text) for m in found]})
            if sum(_overlap(g, (m.start, m.end)) for m in found) >= g[1] - g[0]:
                covered += 1
        for m in found:
            pred_n[m.kind] += 1
            p = (m.start, m.end)
            if any(s["kind"] == m.kind and _overlap(p, (s["start"], s["end"])) >= (s["end"] - s["start"]) / 2
                   for s in item["spans"]):
                pred_ok[m.kind] += 1
            else:
                false_hits.append({"id": item["id"], "kind": m.kind, "text": m.text, "detail": m.detail})
    seconds = time.perf_counter() - started
    total_gold = sum(v for k, v in gold_n.items() if "/" not in k)
    total_tp = sum(v for k, v in tp.items() if "/" not in k)
    per_kind = {
        kind: {"gold": gold_n[kind], "found": tp[kind], "recall": round(tp[kind] / gold_n[kind], 4) if gold_n[kind]
               else None, "predicted": pred_n.get(kind.split("/")[0], 0) if "/" not in kind else None,
               "precision": round(pred_ok[kind] / pred_n[kind], 4) if "/" not in kind and pred_n[kind] else None}
        for kind in sorted(gold_n)
    }
    return {
        "items": len(items), "gold_spans": total_gold, "predicted_spans": sum(pred_n.values()),
        "recall": round(total_tp / total_gold, 4),
        "precision": round(sum(pred_ok.values()) / max(sum(pred_n.values()), 1), 4),
        "redaction_recall": round(covered / total_gold, 4),
        "negative_items_with_findings": sum(1 for i in items if not i["spans"] and find_pii(i["text"])),
        "negative_items": sum(1 for i in items if not i["spans"]),
        "per_kind": per_kind, "misses": misses, "false_findings": false_hits,
        "ms_per_item": round(seconds * 1000 / max(len(items), 1), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", type=Path, default=ROOT / "tests" / "fixtures" / "guard" / "pii_set.jsonl")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "guard_pii.json")
    args = parser.parse_args()
    items = [json.loads(line) for line in args.set.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = score(items)
    print(f"{result['items']} items, {result['gold_spans']} spans: recall {result['recall']}, precision "
          f"{result['precision']}, redaction recall {result['redaction_recall']}")
    for kind, row in result["per_kind"].items():
        print(f"  {kind:16s} {row}")
    for miss in result["misses"][:20]:
        print("  MISS", miss)
    for hit in result["false_findings"][:20]:
        print("  FALSE", hit)
    write_json(args.out, {"command": "python bench/guard_pii.py", "set": str(args.set.relative_to(ROOT))
                          if args.set.is_relative_to(ROOT) else str(args.set), **result,
                          "loadavg": loadavg(), "machine": machine()})


if __name__ == "__main__":
    main()
