"""Train ragtune's cross-encoder reranker on SciFact's train split and measure it on held-out train queries.

The 809 train queries are split by a seeded hash: 20 % held out (never trained on, reported), 10 % dev
(early stopping and checkpoint choice), 70 % training. Hard negatives come from ragtune's own hybrid
retriever. The script writes the triplets, the model (``--out``) with its run.json, and
``bench/results/train_reranker.json`` with dev metrics before/after and throughput.

    .venv/bin/python bench/train_reranker.py --kb /tmp/evals/scifact_256 --out runs/reranker-scifact
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, write_json  # noqa: E402

from ragtune.evaluate.beir import load_beir, split_query_ids  # noqa: E402
from ragtune.evaluate.retrieval import corpus_documents  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.train.negatives import Triplet, mine_hard_negatives, write_jsonl  # noqa: E402
from ragtune.train.reranker import RerankerRecipe, beir_pairs, dev_samples, train_reranker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--kb", type=Path, required=True, help="KB built from the corpus (built here if missing)")
    ap.add_argument("--out", type=Path, default=Path("runs/reranker-scifact"))
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--negatives", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--dev-candidates", type=int, default=20)
    args = ap.parse_args()

    dataset = load_beir(args.beir, "train")
    name = args.beir.resolve().name
    train_ids, dev_ids, heldout_ids = split_query_ids(sorted(dataset.queries), heldout=0.2, dev=0.1, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    for part, ids in (("train", train_ids), ("dev", dev_ids), ("heldout", heldout_ids)):
        (args.out / f"{part}_queries.txt").write_text("\n".join(ids) + "\n")
    print(f"queries: train {len(train_ids)}, dev {len(dev_ids)}, held-out {len(heldout_ids)}")

    with KnowledgeBase.open(args.kb, create=True) as kb:
        kb.ingest_documents(corpus_documents(dataset, name), total=len(dataset.corpus))
        triplet_file = args.out / "triplets.jsonl"
        t = time.perf_counter()
        if triplet_file.is_file():
            triplets = [Triplet(**json.loads(line)) for line in triplet_file.read_text().splitlines() if line]
        else:
            triplets = mine_hard_negatives(kb, beir_pairs(dataset, name, train_ids), n_negatives=args.negatives,
                                           rank_window=(1, 30), margin=0.95)
            write_jsonl(triplet_file, triplets)
        mine_s = time.perf_counter() - t
        dev = dev_samples(kb, beir_pairs(dataset, name, dev_ids), candidates=args.dev_candidates)
    print(f"triplets: {len(triplets)} ({mine_s:.0f} s), dev samples: {len(dev)}")
    recipe = RerankerRecipe(epochs=args.epochs, negatives=args.negatives, num_threads=args.threads,
                            max_length=args.max_length, evals_per_epoch=3)
    run = train_reranker(triplets, args.out, recipe, dev=dev)
    result = {
        "what": "cross-encoder reranker trained on SciFact train (70 %), early-stopped on dev (10 %)",
        "model": str(args.out), "machine": machine(), "loadavg": loadavg(),
        "queries": {"train": len(train_ids), "dev": len(dev_ids), "heldout": len(heldout_ids)},
        "triplets": len(triplets),
        "margin_dropped": sum(t.dropped_by_margin for t in triplets),
        "mine_seconds": round(mine_s, 1),
        **{k: run[k] for k in ("pairs", "steps", "train_seconds", "dev_before", "dev_after", "best_checkpoint")},
        "pairs_per_second_train": round(run["pairs"] * recipe.epochs / max(run["train_seconds"], 1e-9), 1),
    }
    write_json(RESULTS_DIR / "train_reranker.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
