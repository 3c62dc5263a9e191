"""An existing knowledge base searches as before after an upgrade: hits of the same queries from two code versions.

Run once with the old code on ``PYTHONPATH`` and once with the new, on copies of the same KB; ``--compare``
reports how many queries return exactly the same top-k chunk ids (and scores) per mode.

    PYTHONPATH=OLD/src .venv/bin/python bench/kb_compat.py --kb COPY1 --out /tmp/old.json
    PYTHONPATH=src .venv/bin/python bench/kb_compat.py --kb COPY2 --out /tmp/new.json
    .venv/bin/python bench/kb_compat.py --compare /tmp/old.json /tmp/new.json --out bench/results/kb_compat.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import default_scifact_dir, write_json  # noqa: E402


def dump(args: argparse.Namespace) -> None:
    from ragtune.kb import KnowledgeBase

    queries = [json.loads(line)["text"] for line in (args.beir / "queries.jsonl").open()][: args.queries]
    out: dict[str, dict[str, list[tuple[str, float]]]] = {}
    with KnowledgeBase.open(args.kb) as kb:
        for mode in ("sparse", "dense", "hybrid"):
            out[mode] = {q: [(h.chunk_id, round(h.score, 6)) for h in kb.search(q, k=args.k, mode=mode)]
                         for q in queries}
        stats = kb.stats()
    write_json(args.out, {"stats": stats, "hits": out})


def compare(args: argparse.Namespace) -> None:
    old, new = (json.loads(Path(p).read_text()) for p in args.compare)
    report = {"old_stats": old["stats"], "new_stats": new["stats"], "modes": {}}
    for mode, hits in old["hits"].items():
        same_ids = sum(1 for q, h in hits.items() if [c for c, _ in h] == [c for c, _ in new["hits"][mode][q]])
        max_diff = max(abs(a[1] - b[1]) for q, h in hits.items() for a, b in zip(h, new["hits"][mode][q], strict=False))
        report["modes"][mode] = {"queries": len(hits), "identical_top_k": same_ids, "max_score_diff": max_diff}
        print(mode, report["modes"][mode])
    write_json(args.out, report)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--kb", type=Path)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--compare", nargs=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    compare(args) if args.compare else dump(args)


if __name__ == "__main__":
    main()
