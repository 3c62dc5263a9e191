"""SciFact nDCG@10 with --mode graph and --mode auto beside hybrid (the graph must not cost single-hop quality).

Runs ``evaluate_beir`` (the code behind 'ragtune eval retrieval') on SciFact's train split over the KB that
bench/graph_cost.py built and gave a graph (WORKDIR/scifact-graph): the same 809 queries, the same chunks, three
modes side by side.

    flock /tmp/ragtune-heavy.lock nice -n 5 env OMP_NUM_THREADS=1 .venv/bin/python bench/graph_scifact.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, print_table, write_json  # noqa: E402

from ragtune.evaluate.retrieval import evaluate_beir  # noqa: E402

MODES = ("hybrid", "graph", "auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ragtune-graph-bench"))
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "graph_scifact.json")
    args = parser.parse_args()
    kb = args.workdir / "scifact-graph"
    if not kb.exists():
        sys.exit(f"{kb} is missing — run bench/graph_cost.py --dataset scifact first")
    result = evaluate_beir(default_scifact_dir(), kb, split=args.split, modes=MODES)
    result["loadavg"] = loadavg()
    result["machine"] = machine()
    write_json(args.out, result)
    rows = [[mode, r["metrics"]["ndcg_cut_10"], r["metrics"]["recall_100"], r["latency_ms"]["p50"],
             r["latency_ms"]["p95"]] for mode, r in result["modes"].items()]
    print_table(rows, ["mode", "nDCG@10", "Recall@100", "p50 ms", "p95 ms"])


if __name__ == "__main__":
    main()
