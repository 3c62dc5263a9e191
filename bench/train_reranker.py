"""Train ragtune's cross-encoder reranker on SciFact's train split and measure it on held-out train queries.

The 809 train queries are split by a seeded hash: 20 % held out (never trained on, reported), 10 % dev
(early stopping and checkpoint choice), 70 % training. Hard negatives come from ragtune's own hybrid
retriever. Steps (each skipped when its output exists, so the script resumes):

    # 1. mine triplets and dev samples from a KB of the corpus (CPU)
    .venv/bin/python bench/train_reranker.py prepare --kb /tmp/evals/scifact_256 --out runs/reranker-scifact
    # 2. train one or more recipes, keep the best on dev (CPU, or a GPU machine with the same code)
    .venv/bin/python bench/train_reranker.py train --out runs/reranker-scifact --lr 5e-5 --lr 1e-4 --epochs 4
    # 3. evaluate on the held-out queries: `ragtune eval retrieval ... --query-ids OUT/heldout_queries.txt`

``train`` writes ``bench/results/train_reranker.json`` (or ``--results``) with every recipe's dev metrics.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS_DIR,
    corpus_kb,
    default_scifact_dir,
    loadavg,
    machine,
    scifact_train_split,
    write_json,
)


def prepare(args: argparse.Namespace) -> None:
    from ragtune.jsonl import write_jsonl
    from ragtune.train.negatives import mine_hard_negatives
    from ragtune.train.reranker import beir_pairs, dev_samples

    dataset, name, split = scifact_train_split(args.beir, args.out)
    train_ids, dev_ids = split["train"], split["dev"]
    with corpus_kb(args.kb, dataset, name) as kb:
        if not (args.out / "triplets.jsonl").is_file():
            t = time.perf_counter()
            triplets = mine_hard_negatives(kb, beir_pairs(dataset, name, train_ids), n_negatives=args.negatives,
                                           rank_window=(1, 30), margin=0.95)
            write_jsonl(args.out / "triplets.jsonl", triplets)
            print(f"triplets: {len(triplets)} in {time.perf_counter() - t:.0f} s")
        if args.ict and not (args.out / "ict_triplets.jsonl").is_file():
            t = time.perf_counter()
            triplets = mine_hard_negatives(kb, ict_pairs(dataset, name, args.ict), n_negatives=args.negatives,
                                           rank_window=(1, 30), margin=None, mode="sparse")
            for triplet in triplets:
                triplet.source = "mined-ict"
            write_jsonl(args.out / "ict_triplets.jsonl", triplets)
            print(f"ICT triplets: {len(triplets)} in {time.perf_counter() - t:.0f} s")
        if not (args.out / "dev.json").is_file():
            dev = dev_samples(kb, beir_pairs(dataset, name, dev_ids), candidates=args.dev_candidates)
            (args.out / "dev.json").write_text(json.dumps(dev))
            print(f"dev samples: {len(dev)}")


VAGUE = re.compile(r"^(these|this|that|here|we|our|it|in conclusion|in summary|thus|however|together|overall)\b",
                   re.IGNORECASE)


def ict_pairs(dataset, name: str, n: int, seed: int = 0) -> list:
    """Label-free pairs from the corpus: the title as a query for the abstract, and one specific sentence of
    the abstract (inverse cloze) as a query for the rest of it. SciFact's claims are sentence-like statements
    of findings, which is what titles and such sentences are."""
    import random

    from ragtune.ingest import document_id
    from ragtune.train.negatives import TrainingPair

    rng = random.Random(seed)
    pairs = []
    for doc_id in rng.sample(sorted(dataset.corpus), min(n, len(dataset.corpus))):
        entry = dataset.corpus[doc_id]
        title, text = entry.get("title", "").strip(), entry.get("text", "")
        docs = (document_id(f"beir:{name}/{doc_id}"),)
        if len(title.split()) >= 5:
            pairs.append(TrainingPair(title, positive=text, query_id=f"title:{doc_id}", document_ids=docs))
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text) if s.strip()]
        usable = [i for i, s in enumerate(sentences) if 8 <= len(s.split()) <= 40 and not VAGUE.match(s)]
        if len(sentences) >= 3 and usable:
            i = rng.choice(usable)
            context = " ".join(sentences[:i] + sentences[i + 1 :])
            pairs.append(TrainingPair(sentences[i], positive=f"{title}\n{context}" if title else context,
                                      query_id=f"ict:{doc_id}", document_ids=docs))
    return pairs


def train(args: argparse.Namespace) -> None:
    from ragtune.train.negatives import Triplet
    from ragtune.train.reranker import load_reranker_recipe, train_reranker

    files = [args.out / "triplets.jsonl"] + ([args.out / "ict_triplets.jsonl"] if args.ict else [])
    triplets = [Triplet(**json.loads(line)) for f in files for line in f.read_text().splitlines() if line]
    dev = json.loads((args.out / "dev.json").read_text())
    runs = []
    for lr in args.lr:
        recipe = load_reranker_recipe(None, [
            f"model.base_model={args.base_model}", f"model.max_length={args.max_length}",
            f"data.negatives={args.negatives}", f"train.epochs={args.epochs}", f"train.learning_rate={lr}",
            f"train.batch_size={args.batch_size}", "train.evals_per_epoch=2", "train.patience=3",
            *([f"train.num_threads={args.threads}"] if args.threads else [])])
        run = train_reranker(triplets, args.out / f"lr{lr:g}", recipe, dev=dev)
        runs.append(run)
        metrics = run["metrics"]
        print(f"lr {lr:g}: dev nDCG@10 {metrics['dev_before'].get('dev_ndcg@10')} -> "
              f"{metrics['dev_after'].get('dev_ndcg@10')} in {metrics['train_seconds']} s")
    best = max(runs, key=lambda r: r["metrics"]["dev_after"].get("dev_ndcg@10", 0.0))
    best_dir = args.out / f"lr{best['recipe']['train']['learning_rate']:g}"
    if args.export:
        _export(best_dir, args.export)
    result = {
        "what": "cross-encoder reranker trained on SciFact train (70 %), early-stopped on dev (10 %)",
        "machine": machine(), "loadavg": loadavg(), "triplets": len(triplets), "dev_queries": len(dev),
        "best": str(best_dir), "runs": [{"recipe": r["recipe"], "data": r["data"], **r["metrics"],
                                         "versions": r["versions"]} for r in runs],
    }
    write_json(args.results, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


def _export(model_dir: Path, target: Path, limit: int = 15 * 2**20) -> None:
    """The model's weights in fp16, in files under 15 MB (what the GPU machine's file transfer takes back):
    tensors larger than that are cut along their first axis; ``assemble`` puts them back together."""
    import torch
    from safetensors.torch import save_file
    from sentence_transformers.cross_encoder import CrossEncoder

    target.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in CrossEncoder(str(model_dir)).model.state_dict().items()}
    pieces: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = max(1, -(-tensor.numel() * 2 // (limit // 2)))
        for n, piece in enumerate(torch.tensor_split(tensor, parts) if parts > 1 else [tensor]):
            pieces[f"{key}@{n}"] = piece.contiguous()
    shard: dict[str, torch.Tensor] = {}
    size, index = 0, 0
    for key, tensor in pieces.items():
        if shard and size + tensor.numel() * 2 > limit:
            save_file(shard, str(target / f"part{index}.safetensors"))
            shard, size, index = {}, 0, index + 1
        shard[key] = tensor
        size += tensor.numel() * 2
    save_file(shard, str(target / f"part{index}.safetensors"))
    shutil.copy(model_dir / "run.json", target / "run.json")


def assemble(args: argparse.Namespace) -> None:
    import torch
    from safetensors.torch import load_file
    from sentence_transformers.cross_encoder import CrossEncoder

    from ragtune.embed.sentence_transformers import resolve_model

    pieces: dict[str, dict[int, torch.Tensor]] = {}
    for f in sorted(args.parts.glob("part*.safetensors")):
        for key, tensor in load_file(str(f)).items():
            name, n = re.match(r"(.*)@(\d+)$", key).groups()
            pieces.setdefault(name, {})[int(n)] = tensor
    state = {k: torch.cat([v[i] for i in sorted(v)]).float() for k, v in pieces.items()}
    run = json.loads((args.parts / "run.json").read_text())
    model = CrossEncoder(resolve_model(args.base_model), num_labels=1, max_length=run["recipe"]["model"]["max_length"],
                         model_kwargs={"dtype": torch.float32})
    missing, unexpected = model.model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not fit the base model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.save_pretrained(str(args.out))
    (args.out / "run.json").write_text(json.dumps(run, indent=2))
    print(f"assembled {len(state)} tensors into {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--beir", type=Path, default=default_scifact_dir())
    p.add_argument("--kb", type=Path, required=True, help="KB built from the corpus (built here if missing)")
    p.add_argument("--dev-candidates", type=int, default=20)
    p.add_argument("--ict", type=int, default=0, help="also mine this many inverse-cloze pairs from the corpus")
    t = sub.add_parser("train")
    t.add_argument("--base-model", default="all-MiniLM-L6-v2")
    t.add_argument("--epochs", type=float, default=2.0)
    t.add_argument("--lr", type=float, action="append")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--max-length", type=int, default=256)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--export", type=Path, default=None, help="also write the best model as fp16 shards here")
    t.add_argument("--results", type=Path, default=RESULTS_DIR / "train_reranker.json")
    t.add_argument("--ict", action="store_true", help="add the inverse-cloze triplets made by prepare --ict")
    a = sub.add_parser("assemble", help="rebuild a model exported with --export into a normal directory")
    a.add_argument("--parts", type=Path, required=True)
    a.add_argument("--base-model", default="all-MiniLM-L6-v2")
    for q in (p, t, a):
        q.add_argument("--out", type=Path, default=Path("runs/reranker-scifact"))
        q.add_argument("--negatives", type=int, default=4)
    args = ap.parse_args()
    if args.step == "prepare":
        prepare(args)
    elif args.step == "assemble":
        assemble(args)
    else:
        args.lr = args.lr or [5e-5]
        train(args)


if __name__ == "__main__":
    main()
