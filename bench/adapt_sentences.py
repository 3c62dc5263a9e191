"""Label-free adaptation with sentence queries (the inverse cloze task) on SciFact: does it beat the default?

`kb adapt` asks the KB's LLM for questions; the bundled 135M model writes poor ones (bench/adapt_scifact.py: 3,006
written, 1,465 kept in 48 minutes, and the embedder trained on them was rejected). This asks whether no LLM does
better: a random sentence (8–40 words) of each of N random chunks is the query, the chunk without that sentence the
positive, hard negatives are mined by the KB's own retriever, and the same trainer as `kb adapt` runs for a fixed
time. The copy of the KB is then re-embedded and measured on SciFact's real train queries (held-out 152 and all
809); qrels are used only to measure.

    OMP_NUM_THREADS=1 .venv/bin/python bench/adapt_sentences.py --kb /tmp/evals/scifact_c1_fp32_256 \\
        --pairs 2000 --train-minutes 20

Measured 2026-12-05 (AMD EPYC, one thread; `adapt_sentences_scifact.json`): held-out hybrid nDCG@10 0.7149 ->
0.7119, all 0.7366 -> 0.7360, after 43 steps (the trainer's own held-out sentence pairs 0.600 -> 0.642: the model
learned the task, the real queries did not gain). Not adopted.
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
from default_pipeline import query_parts, run_queries, scores  # noqa: E402


def sentence_pairs(kb: Any, n: int, seed: int = 0) -> list[Any]:
    """One (sentence, chunk without it) pair for each of up to ``n`` random chunks with three sentences or more."""
    from ragtune.text import sentences
    from ragtune.train.negatives import TrainingPair
    from ragtune.train.synthetic import knowledge_base_chunks

    chunks = list(knowledge_base_chunks(kb))
    rng = random.Random(seed)
    rng.shuffle(chunks)
    pairs = []
    for chunk in chunks:
        head, sep, body = chunk.text.partition("\n\n")
        if not sep or len(head.split()) > 40:  # a title line is kept in the positive, never asked
            body = chunk.text
        said = sentences(body)
        candidates = [s for s in said if 8 <= len(s.split()) <= 40]
        if len(said) < 3 or not candidates:
            continue
        query = rng.choice(candidates)
        positive = chunk.text.replace(query, " ").replace("  ", " ").strip()
        pairs.append(TrainingPair(query, positive, query_id=chunk.chunk_id, chunk_ids=(chunk.chunk_id,),
                                  document_ids=(chunk.document_id,)))
        if len(pairs) >= n:
            break
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--kb", type=Path, required=True, help="a built KB of the corpus (copied, never changed)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/evals/adapt_sentences"))
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--train-minutes", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "adapt_sentences_scifact.json")
    args = ap.parse_args()

    from ragtune.evaluate.beir import load_beir
    from ragtune.jsonl import write_jsonl
    from ragtune.kb import KnowledgeBase
    from ragtune.train.adapt import AdaptConfig, AdaptPlan, _train
    from ragtune.train.negatives import Triplet, mine_hard_negatives

    kb_copy = args.work / "kb"
    if not kb_copy.exists():
        shutil.copytree(args.kb, kb_copy)
    dataset = load_beir(args.beir, "train")
    prefix = f"beir:{args.beir.resolve().name}/"
    parts = query_parts()
    started = time.perf_counter()

    def measure(kb: Any) -> dict[str, Any]:
        return scores(run_queries(kb.retriever(rerank=False), dataset.queries, "hybrid", prefix), dataset.qrels, parts)

    with KnowledgeBase.open(kb_copy, num_threads=1) as kb:
        before = measure(kb)
        print("before", before["heldout"]["ndcg_cut_10"], before["all"]["ndcg_cut_10"], flush=True)
        triplets_path = args.work / f"triplets_{args.pairs}.jsonl"
        pairs = sentence_pairs(kb, args.pairs)
        triplets = mine_hard_negatives(kb, pairs, n_negatives=2, rank_window=(3, 30), margin=0.95)
        mined = {t.query for t in triplets}
        # Pairs without a usable negative still train with in-batch negatives, as in `kb adapt`.
        triplets += [Triplet(p.query, p.positive, [], "synthetic", p.query_id) for p in pairs if p.query not in mined]
        write_jsonl(triplets_path, triplets)
        config = AdaptConfig(budget_minutes=args.train_minutes + 10, max_epochs=1.0)
        plan = AdaptPlan(chunks=len(pairs), embed_seconds_per_chunk=0.012, reembed_seconds=200, question_seconds=0,
                         train_seconds=args.train_minutes * 60, step_seconds=13.4)
        model_dir = args.work / f"embedder_{args.pairs}"
        train = _train(kb, config, plan, triplets_path, model_dir)
        print("train", train, flush=True)
        kb.reembed(str(model_dir))
        after = measure(kb)
        print("after", after["heldout"]["ndcg_cut_10"], after["all"]["ndcg_cut_10"], flush=True)
    write_json(args.out, {
        "what": "sentence queries (inverse cloze task) from the corpus alone; train-split qrels only measure",
        "source_kb": str(args.kb), "pairs": len(pairs), "triplets_with_negatives": len(mined), "train": train,
        "before": before, "after": after, "seconds": round(time.perf_counter() - started, 1), "loadavg": loadavg(),
        "machine": machine(),
    })
    print(json.dumps({"heldout": [before["heldout"]["ndcg_cut_10"], after["heldout"]["ndcg_cut_10"]]}))


if __name__ == "__main__":
    main()
