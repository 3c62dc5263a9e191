"""Fusion defaults on data they were not chosen on. ``--study rrf``: rrf_k = 20 with dense_weight = 0.8 (chosen on
SciFact train + dev by bench/default_pipeline.py) against the textbook k = 60 with equal weights
(→ fusion_defaults.json). ``--study dbsf``: distribution-based score fusion against that RRF, same weights
(→ fusion_dbsf.json; DBSF was chosen on SciFact train + dev rankings). ``--study bm25``: BM25 k1 = 0.9, b = 0.4
(Anserini's defaults for BEIR, best of 12 k1 × b pairs on SciFact train + dev: ``bench/default_pipeline.py bm25``)
against the textbook k1 = 1.2, b = 0.75 (→ fusion_bm25.json).

- SciFact: nDCG@10 over all 809 train queries and over the 152 held-out ones (never used for a choice), for hybrid,
  graph and auto, on a graph-enabled KB of the corpus (``--scifact-kb``, built by bench/graph_cost.py).
- LiHua-World: evidence recall@5/@10 of the single-hop and multi-hop dev questions and refusal F1, for hybrid and
  graph (bench/graph_lihua.py's measures, its KB in ``--workdir``).

    OMP_NUM_THREADS=1 .venv/bin/python bench/fusion_defaults.py --scifact-kb /tmp/ragtune-graph-bench/scifact-graph \
        [--study dbsf|bm25]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, print_table, write_json  # noqa: E402
from graph_lihua import evaluate_retrieval, lihua_questions  # noqa: E402

STUDIES = {
    "rrf": {"k=60, dense 1.0 (before)": {"fusion": "rrf", "rrf_k": 60, "dense_weight": 1.0},
            "k=20, dense 0.8": {"fusion": "rrf", "rrf_k": 20, "dense_weight": 0.8}},
    "dbsf": {"rrf k=20, dense 0.8 (before)": {"fusion": "rrf", "rrf_k": 20, "dense_weight": 0.8},
             "dbsf, dense 0.8 (default)": {"fusion": "dbsf", "dense_weight": 0.8}},
    "bm25": {"k1 1.2, b 0.75 (before)": {"bm25_k1": 1.2, "bm25_b": 0.75},
             "k1 0.9, b 0.4 (default)": {"bm25_k1": 0.9, "bm25_b": 0.4}},
}
OUTPUTS = {"rrf": "fusion_defaults.json", "dbsf": "fusion_dbsf.json", "bm25": "fusion_bm25.json"}


def scifact(kb_path: Path, beir: Path, settings: dict[str, Any], modes: tuple[str, ...]) -> dict[str, Any]:
    from ragtune.evaluate.retrieval import evaluate_beir

    held = (RESULTS_DIR / "scifact_split" / "heldout_queries.txt").read_text().split()
    scores = {group: evaluate_beir(beir, kb_path, split="train", modes=modes, query_ids=ids, **settings)["modes"]
              for group, ids in (("all", None), ("heldout", held))}
    return {mode: {group: scores[group][mode]["metrics"]["ndcg_cut_10"] for group in scores} for mode in modes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--scifact-kb", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ragtune-graph-bench"), help="bench/graph_lihua.py's")
    ap.add_argument("--study", choices=tuple(STUDIES), default="rrf")
    ap.add_argument("--out", type=Path, help="default: bench/results/fusion_defaults.json (rrf), fusion_dbsf.json, "
                                             "fusion_bm25.json")
    args = ap.parse_args()
    out = args.out or RESULTS_DIR / OUTPUTS[args.study]
    from ragtune.kb import KnowledgeBase

    started = time.perf_counter()
    questions = lihua_questions()
    results: dict[str, Any] = {}
    for label, settings in STUDIES[args.study].items():
        with KnowledgeBase.open(args.workdir / "lihua-graph", **settings) as kb:
            lihua = {mode: evaluate_retrieval(kb, questions, mode) for mode in ("hybrid", "graph", "auto")}
        results[label] = {"settings": settings, "scifact": scifact(args.scifact_kb, args.beir, settings,
                                                                    ("hybrid", "graph", "auto")),
                          "lihua": lihua}
    rows = []
    for label, r in results.items():
        for mode in ("hybrid", "graph", "auto"):
            li = r["lihua"][mode]
            rows.append([label, mode, r["scifact"][mode]["all"], r["scifact"][mode]["heldout"],
                         li["Single"]["recall@10"], li["Multi"]["recall@10"], li["refusal"]["f1"]])
    print_table(rows, ["settings", "mode", "SciFact all", "SciFact held-out", "LiHua single R@10",
                       "LiHua multi R@10", "LiHua refusal F1"])
    write_json(out, {"what": __doc__.split("\n\n")[0], "study": args.study, "results": results,
                     "scifact_kb": str(args.scifact_kb), "seconds": round(time.perf_counter() - started, 1),
                     "loadavg": loadavg(),
                     "machine": machine()})


if __name__ == "__main__":
    main()
