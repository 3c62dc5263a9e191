"""`kb adapt` on SciFact from the corpus alone: no qrels are used to adapt, only to measure afterwards.

Copies a SciFact KB built by ``bench/default_pipeline.py build`` (so the original stays as it was), runs
``adapt_knowledge_base`` on the copy with the bundled LLM and a time budget, and measures hybrid nDCG@10 of the
real SciFact train-split queries (held-out 152 and all 809) before and after. The same for any BEIR-layout
data set with ``--beir``.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/adapt_scifact.py \\
        --kb /tmp/evals/scifact_256 --budget 100
    .venv/bin/python bench/adapt_scifact.py --kb /tmp/evals/scifact_256 --staged   # the trained model anyway
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, write_json  # noqa: E402
from default_pipeline import query_parts, run_queries, scores  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.train.adapt import AdaptConfig, adapt_knowledge_base  # noqa: E402


def measure(kb: KnowledgeBase, dataset: Any, prefix: str, parts: dict[str, list[str]]) -> dict[str, Any]:
    retriever = kb.retriever(rerank=False)
    return scores(run_queries(retriever, dataset.queries, "hybrid", prefix), dataset.qrels, parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--kb", type=Path, required=True, help="a built KB of the corpus (copied, never changed)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/evals/adapt_scifact_kb"))
    ap.add_argument("--budget", type=float, default=110.0, help="minutes")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "adapt_scifact.json")
    ap.add_argument("--staged", action="store_true",
                    help="after a run: re-encode another copy with the model adapt trained, even where adapt kept "
                         "the KB's own, and add its SciFact scores to --out (is the synthetic judge right?)")
    args = ap.parse_args()
    if args.staged:
        measure_staged(args)
        return
    if not args.work.exists():
        shutil.copytree(args.kb, args.work)
    dataset = load_beir(args.beir, "train")
    prefix = f"beir:{args.beir.resolve().name}/"
    parts = query_parts()
    started = time.perf_counter()
    with KnowledgeBase.open(args.work) as kb:
        before = measure(kb, dataset, prefix, parts)
        print("before", before["heldout"]["ndcg_cut_10"], before["all"]["ndcg_cut_10"], flush=True)
        report = adapt_knowledge_base(kb, AdaptConfig(budget_minutes=args.budget),
                                      on_progress=lambda stage, done, total: None)
    with KnowledgeBase.open(args.work) as kb:
        after = measure(kb, dataset, prefix, parts)
    print("after", after["heldout"]["ndcg_cut_10"], after["all"]["ndcg_cut_10"], flush=True)
    write_json(args.out, {"what": "kb adapt on SciFact's corpus alone (bundled SmolLM2 writes the questions); "
                                  "train-split qrels only measure", "budget_minutes": args.budget,
                          "wall_s": round(time.perf_counter() - started, 1), "source_kb": str(args.kb),
                          "before": before, "after": after, "adapt": report, "loadavg": loadavg(),
                          "machine": machine()})


def measure_staged(args: argparse.Namespace) -> None:
    """SciFact hybrid nDCG@10 with the embedder a finished run trained, on a fresh copy of the source KB."""
    result = json.loads(args.out.read_text())
    model = Path(result["adapt"]["model_dir"])
    copy = args.work.with_name(args.work.name + "_staged")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(args.kb, copy)
    dataset = load_beir(args.beir, "train")
    prefix = f"beir:{args.beir.resolve().name}/"
    started = time.perf_counter()
    with KnowledgeBase.open(copy) as kb:
        precision = kb.settings.embed_precision
        kb.reembed(str(model), precision=precision)
    with KnowledgeBase.open(copy) as kb:
        staged = measure(kb, dataset, prefix, query_parts())
    print("staged model", staged["heldout"]["ndcg_cut_10"], staged["all"]["ndcg_cut_10"], flush=True)
    result["staged_model"] = {"model": str(model), "precision": precision, "scores": staged,
                              "wall_s": round(time.perf_counter() - started, 1), "loadavg": loadavg()}
    write_json(args.out, result)
    shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    main()
