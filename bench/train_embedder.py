"""Fine-tune the bundled all-MiniLM-L6-v2 on SciFact's train split and measure it on held-out train queries.

The same seeded split as ``bench/train_reranker.py`` (by query id): 70 % training, 10 % dev (checkpoint
choice, ``data.eval`` of the recipe), 20 % held out (reported, never trained on or used for choices).
Variants differ only in their negatives: ``mined`` (hard negatives from ragtune's hybrid retriever, ranks
1-30, margin filter 0.95), ``inbatch`` (the same pairs, in-batch negatives only), ``generated`` (LLM-written
negatives from ``ragtune data gen-negatives``; pairs without a usable one train in-batch only),
``mined+generated`` (a query's generated negative where there is one, its mined one otherwise), ``distilled``
(the mined triplets labelled by a trained cross-encoder, ``--teacher``: MarginMSE, so the reranker's ordering
costs nothing at query time), and ``synthetic`` uses no labels at all: LLM-written questions for a random
sample of corpus chunks (``ragtune data synth-queries``), mined negatives, a fixed number of epochs (nothing
labelled to choose a checkpoint with). Each step skips what already exists, so it resumes:

    # 1. splits, mined train/dev triplets, pairs (CPU; needs a KB of the corpus, built if missing)
    .venv/bin/python bench/train_embedder.py prepare --kb /tmp/evals/scifact_256
    # 1b. optional: LLM-written negatives for the first N training pairs (~2 s each here, batched by 16)
    .venv/bin/python bench/train_embedder.py generate --kb /tmp/evals/scifact_256 --limit 100
    # 1c. optional: the label-free data, questions for N random chunks (~10-30 s each on this CPU)
    .venv/bin/python bench/train_embedder.py synth --kb /tmp/evals/scifact_256 --sample 150
    # 2. train a variant with the shipped recipe's defaults (overrides: --set section.field=value)
    .venv/bin/python bench/train_embedder.py train --variant mined --set train.epochs=2
    # 2b. distil a cross-encoder trained by bench/train_reranker.py (same split) into the embedder
    .venv/bin/python bench/train_embedder.py train --variant distilled --teacher runs/reranker-scifact/lr5e-05
    # 3. copy the KB, `reembed` the copy with the tuned model, evaluate dense and hybrid on the held-out queries
    .venv/bin/python bench/train_embedder.py evaluate --variant mined --kb /tmp/evals/scifact_256
    # 4. one table of every variant evaluated so far -> bench/results/train_embedder.json
    .venv/bin/python bench/train_embedder.py report
"""

from __future__ import annotations

import argparse
import json
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
    print_table,
    scifact_train_split,
    write_json,
)

VARIANTS = ("mined", "inbatch", "generated", "mined+generated", "distilled", "synthetic")
NEGATIVES = 4
RANK_WINDOW = (1, 30)
MARGIN = 0.95


def prepare(args: argparse.Namespace) -> None:
    from ragtune.jsonl import write_jsonl
    from ragtune.train.negatives import mine_hard_negatives
    from ragtune.train.reranker import beir_pairs

    dataset, name, split = scifact_train_split(args.beir, args.out)
    with corpus_kb(args.kb, dataset, name) as kb:
        for part, ids in (("triplets", split["train"]), ("dev", split["dev"])):
            path = args.out / f"{part}.jsonl"
            if path.is_file():
                continue
            started = time.perf_counter()
            triplets = mine_hard_negatives(kb, beir_pairs(dataset, name, ids), n_negatives=NEGATIVES,
                                           rank_window=RANK_WINDOW, margin=MARGIN)
            write_jsonl(path, triplets)
            print(f"{path.name}: {len(triplets)} triplets in {time.perf_counter() - started:.0f} s")
    pairs = args.out / "pairs.jsonl"
    if not pairs.is_file():
        rows = [json.loads(line) for line in (args.out / "triplets.jsonl").read_text().splitlines() if line]
        write_jsonl(pairs, [{"query": r["query"], "positive": r["positive"], "query_id": r.get("query_id", "")}
                            for r in rows])


def generate(args: argparse.Namespace) -> None:
    from ragtune.jsonl import write_jsonl
    from ragtune.kb import KnowledgeBase
    from ragtune.train.negatives import generate_negatives, read_pairs

    pairs = read_pairs(args.out / "pairs.jsonl")[: args.limit or None]
    started = time.perf_counter()
    with KnowledgeBase.open(args.kb) as kb:
        # The KB's reply cache makes a re-run after an interruption skip what was already written.
        triplets = generate_negatives(kb.llm_client(), pairs, per_query=1, batch_size=args.batch_size,
                                      on_progress=lambda done, total: print(f"\r{done}/{total}", end="", flush=True))
    write_jsonl(args.out / "generated.jsonl", triplets)
    seconds = time.perf_counter() - started
    print(f"\n{len(triplets)} of {len(pairs)} pairs got a generated negative in {seconds:.0f} s")


def synth(args: argparse.Namespace) -> None:
    from ragtune.jsonl import write_jsonl
    from ragtune.kb import KnowledgeBase
    from ragtune.train.negatives import mine_hard_negatives, read_pairs
    from ragtune.train.synthetic import synth_queries

    queries = args.out / "synthetic_queries.jsonl"
    with KnowledgeBase.open(args.kb) as kb:
        if not queries.is_file():
            started = time.perf_counter()
            kept, report = synth_queries(
                kb, per_chunk=2, sample=args.sample, seed=0,
                on_progress=lambda done, total: print(f"\r{done}/{total}", end="", flush=True))
            write_jsonl(queries, kept)
            summary = {**report.to_dict(), "sample": args.sample, "seconds": round(time.perf_counter() - started)}
            (args.out / "synthetic_report.json").write_text(json.dumps(summary, indent=2))
            print(f"\n{summary}")
        triplets = mine_hard_negatives(kb, read_pairs(queries), n_negatives=NEGATIVES, rank_window=RANK_WINDOW,
                                       margin=MARGIN)
    write_jsonl(args.out / "synthetic.jsonl", triplets)
    print(f"synthetic.jsonl: {len(triplets)} triplets")


def train(args: argparse.Namespace) -> None:
    from ragtune.train.embedder import load_embedder_recipe, train_embedder

    data = {
        "mined": [f"data.triplets=['{args.out / 'triplets.jsonl'}']"],
        "inbatch": ["data.triplets=[]", f"data.pairs=['{args.out / 'pairs.jsonl'}']"],
        # Pairs whose generation failed still train, with in-batch negatives.
        "generated": [f"data.triplets=['{args.out / 'generated.jsonl'}']",
                      f"data.pairs=['{args.out / 'pairs.jsonl'}']"],
        # Merged per query with the generated file first: a query's generated negative where the LLM wrote a
        # usable one, its best mined one otherwise (one hard negative per query, as in ``mined``).
        "mined+generated": [f"data.triplets=['{args.out / 'generated.jsonl'}', '{args.out / 'triplets.jsonl'}']"],
        # No labels, so no dev qrels: a fixed number of epochs and the last model. (Held-out synthetic
        # questions pass the round trip by construction, score nDCG@10 = 1.0 throughout and cannot choose.)
        "synthetic": [f"data.triplets=['{args.out / 'synthetic.jsonl'}']", "data.eval_split=0"],
        "distilled": [f"data.triplets=['{args.out / 'triplets.jsonl'}']", "loss.kind=margin_mse",
                      f"loss.teacher='{(args.teacher or Path()).resolve()}'"],
    }[args.variant]
    if args.variant == "distilled" and not args.teacher:
        sys.exit("--variant distilled needs --teacher DIR (a cross-encoder from bench/train_reranker.py)")
    dev = [] if args.variant == "synthetic" else [f"data.eval=['{args.out / 'dev.jsonl'}']"]
    overrides = [*data, *dev, f"output.dir='{args.out / (args.name or args.variant)}'",
                 *([f"train.num_threads={args.threads}"] if args.threads else []), *args.set]
    recipe = load_embedder_recipe(Path(__file__).resolve().parents[1] / "recipes" / "embedder.toml", overrides)
    run = train_embedder(recipe)
    metrics = run["metrics"]
    print(f"{args.name or args.variant}: dev nDCG@10 {metrics['heldout_before'].get('heldout_cosine_ndcg@10')} -> "
          f"{metrics['heldout_after'].get('heldout_cosine_ndcg@10')} in {metrics['train_seconds']} s, "
          f"{metrics['global_step']} steps")


def evaluate(args: argparse.Namespace) -> None:
    from ragtune.evaluate.retrieval import evaluate_beir
    from ragtune.kb import KnowledgeBase

    heldout = (args.out / "heldout_queries.txt").read_text().split()
    name = args.name or args.variant
    model = args.out / name if args.variant != "base" else None
    kb_path = args.kb if model is None else args.kb.with_name(f"{args.kb.name}_{args.out.name}_{name}")
    reembed: dict = {}
    if model is not None:
        if not kb_path.exists():
            # A copy keeps the shared KB on the bundled model; reembed re-encodes only the vectors.
            shutil.copytree(args.kb, kb_path, ignore=shutil.ignore_patterns("*.lock"))
        started = time.perf_counter()
        with KnowledgeBase.open(kb_path) as kb:
            reembed = kb.reembed(str(model.resolve()))
        reembed["seconds"] = round(time.perf_counter() - started, 1)
        print(f"re-embedded {kb_path} in {reembed['seconds']} s")
    report = evaluate_beir(args.beir, kb_path, split="train", modes=("dense", "hybrid"), reranks=args.rerank,
                           query_ids=heldout)
    result = {"variant": name, "model": str(model) if model else "all-MiniLM-L6-v2", "reembed": reembed,
              "heldout_queries": len(heldout), "loadavg": loadavg(), "report": report}
    if model is not None:
        run = json.loads((model / "run.json").read_text())
        result["run"] = {k: v for k, v in run.items() if k not in ("history", "log_history")}
    path = args.out / f"eval_{name}.json"
    path.write_text(json.dumps(result, indent=2))
    for label, mode in report["modes"].items():
        metrics = mode["metrics"]
        print(f"{name} {label}: nDCG@10 {metrics['ndcg_cut_10']}, R@100 {metrics['recall_100']}")


def report(args: argparse.Namespace) -> None:
    rows, results = [], {}
    for path in sorted(args.out.glob("eval_*.json")):
        result = json.loads(path.read_text())
        results[result["variant"]] = result
        # Runs recorded before run.json took the shape every trainer shares kept these keys at the top.
        run = result.get("run", {})
        run = {**run, **run.get("metrics", {})}
        for label, mode in result["report"]["modes"].items():
            rows.append([result["variant"], label, mode["metrics"]["ndcg_cut_10"], mode["metrics"]["recall_100"],
                         run.get("heldout_after", {}).get("heldout_cosine_ndcg@10", ""),
                         run.get("global_step", run.get("steps", "")),
                         run.get("train_seconds", "")])
    print_table(rows, ["variant", "retrieval", "nDCG@10", "R@100", "dev nDCG@10", "steps", "train s"])
    synthetic = args.out / "synthetic_report.json"
    write_json(args.results, {
        "synthetic_queries": json.loads(synthetic.read_text()) if synthetic.is_file() else None,
        "what": "all-MiniLM-L6-v2 fine-tuned on SciFact train (70 %), checkpoint chosen on dev (10 %), "
                "evaluated on the 20 % held-out train queries over the full corpus",
        "machine": machine(), "table": rows, "variants": results,
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    steps = {name: sub.add_parser(name) for name in ("prepare", "generate", "synth", "train", "evaluate", "report")}
    for name in ("prepare", "generate", "synth", "evaluate"):
        steps[name].add_argument("--kb", type=Path, required=True, help="KB of the corpus (bundled MiniLM)")
    for p in steps.values():
        p.add_argument("--beir", type=Path, default=default_scifact_dir())
        p.add_argument("--out", type=Path, default=Path("runs/embedder-scifact"))
    steps["generate"].add_argument("--limit", type=int, default=0, help="only the first N training pairs")
    steps["generate"].add_argument("--batch-size", type=int, default=16, help="prompts the LLM writes together")
    steps["synth"].add_argument("--sample", type=int, default=150, help="corpus chunks to write questions for")
    steps["train"].add_argument("--variant", choices=VARIANTS, required=True)
    steps["train"].add_argument("--threads", type=int, default=None)
    steps["train"].add_argument("--teacher", type=Path, default=None, help="distilled: the cross-encoder to distil")
    steps["train"].add_argument("--set", action="append", default=[], help="recipe override, section.field=value")
    steps["evaluate"].add_argument("--variant", choices=("base", *VARIANTS), required=True)
    for name in ("train", "evaluate"):
        steps[name].add_argument("--name", default="", help="run name, to try other settings of a variant "
                                 "(default: the variant)")
    steps["evaluate"].add_argument("--rerank", action="append", default=[], help="also evaluate with this reranker")
    steps["report"].add_argument("--results", type=Path, default=RESULTS_DIR / "train_embedder.json")
    args = ap.parse_args()
    steps_run = {"prepare": prepare, "generate": generate, "synth": synth, "train": train, "evaluate": evaluate,
                 "report": report}
    steps_run[args.step](args)


if __name__ == "__main__":
    main()
