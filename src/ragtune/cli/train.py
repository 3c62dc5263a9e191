"""The ``ragtune train`` commands: LLMs (SFT, DPO, KTO, ORPO, GRPO), reward models, embedders and rerankers."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ragtune.cli.common import JsonOpt, KbOpt, SetOpt, console, emit, err_console, fail, open_kb, progress_bar
from ragtune.errors import RagtuneError

app = typer.Typer(help="Train models: LLMs (SFT, DPO, KTO, ORPO, GRPO), reward models, rerankers, embedders.",
                  no_args_is_help=True)

RecipeArg = Annotated[
    Path | None, typer.Argument(help="Recipe TOML file (see recipes/); omitted = every default.", show_default=False)
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in output.dir from its last checkpoint.")]


def _train(method: str, recipe_path: Path | None, overrides: list[str] | None, resume: bool, as_json: bool) -> None:
    # Length statistics, device notes and truncation warnings must be seen before a long run starts.
    logging.getLogger("ragtune.train").setLevel(logging.INFO)
    try:
        from ragtune.train.recipe import load_recipe

        recipe = load_recipe(recipe_path, overrides, method=method)
        # The trainer prints its progress and metric lines on stdout; stdout is kept for ragtune's report.
        with contextlib.redirect_stdout(sys.stderr):
            if method == "sft":
                from ragtune.train.sft import train_sft

                record = train_sft(recipe, resume=resume)
            elif method == "reward":
                from ragtune.train.reward import train_reward

                record = train_reward(recipe, resume=resume)
            elif method == "grpo":
                record = _train_grpo(recipe, resume)
            else:
                from ragtune.train.preference import train_preference

                record = train_preference(recipe, resume=resume)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    _report_run(record, as_json)


def _train_grpo(recipe: Any, resume: bool) -> dict[str, Any]:
    """GRPO/RLOO; with rl.kb, questions without sources get the knowledge base's best hits."""
    from ragtune.train.rl import train_rl

    if not recipe.rl.kb:
        return train_rl(recipe, resume=resume)
    from ragtune.types import embedding_text

    with open_kb(Path(recipe.rl.kb)) as kb:
        return train_rl(recipe, resume=resume,
                        retrieve=lambda question, k: [embedding_text(h.text, h.meta) for h in kb.search(question, k)])


def _report_run(record: dict[str, Any], as_json: bool) -> None:
    if "method" not in record:  # a secondary process of a multi-process run: the main one reports
        return
    metrics = record["metrics"]
    summary = {
        "run": record["run_dir"],
        "method": record["method"],
        "finetune": record["finetune"],
        "steps": metrics.get("global_step"),
        "train_loss": metrics.get("train", {}).get("train_loss"),
        "eval_loss": metrics.get("eval", {}).get("eval_loss"),
        "seconds": metrics.get("train", {}).get("train_runtime"),
        "device": record["device"]["device"],
        "precision": record["device"]["precision"],
    }
    if record["method"] == "reward":
        summary["eval_accuracy"] = metrics.get("eval", {}).get("eval_accuracy")
    heldout = metrics.get("heldout")
    if heldout:
        keys = ("right_and_cited", "false_refusals", "correct_refusals", "mean_reward")
        summary["heldout"] = {when: {k: (heldout[when] or {}).get(k) for k in keys} for when in ("before", "after")}
    if as_json:
        emit(summary)
        return
    table = Table(title=f"{record['method']} ({record['finetune']}) finished", show_header=False)
    for key, value in summary.items():
        if key != "heldout":
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    if heldout:
        grades = Table(title="held-out questions, greedy answers")
        for column in ("", "before", "after"):
            grades.add_column(column)
        for key in summary["heldout"]["after"]:
            grades.add_row(key, *(str(summary["heldout"][when][key]) for when in ("before", "after")))
        console.print(grades)
    if record["method"] == "reward":
        console.print(f"score it: ragtune model score {summary['run']} --data pairs.jsonl\n"
                      f"use it:   ragtune ask \"...\" --best-of 4 --reward {summary['run']}")
    else:
        console.print(f"serve it: ragtune ask \"...\" --llm local --llm-adapter {summary['run']}")


@app.command("sft")
def train_sft_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """Supervised fine-tuning: LoRA, DoRA, QLoRA or full (model.finetune), on assistant tokens only."""
    _train("sft", recipe, set_, resume, as_json)


@app.command("dpo")
def train_dpo_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """Direct preference optimisation on prompt/chosen/rejected pairs."""
    _train("dpo", recipe, set_, resume, as_json)


@app.command("kto")
def train_kto_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """KTO on prompt/completion/label rows (thumbs up/down feedback)."""
    _train("kto", recipe, set_, resume, as_json)


@app.command("orpo")
def train_orpo_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """ORPO (SFT and preference in one step, no reference model) on prompt/chosen/rejected pairs."""
    _train("orpo", recipe, set_, resume, as_json)


@app.command("reward")
def train_reward_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """A reward model (score head, Bradley–Terry loss) on preference pairs or 👍/👎 feedback exports."""
    _train("reward", recipe, set_, resume, as_json)


@app.command("grpo")
def train_grpo_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """GRPO (or RLOO: rl.algorithm) on knowledge-base questions with verifiable rewards: cited claims the
    sources support, refusing exactly when they lack the answer, containing the reference; plus a reward model."""
    _train("grpo", recipe, set_, resume, as_json)


@app.command("embedder")
def train_embedder_cmd(
    recipe: Annotated[
        Path | None, typer.Argument(help="Recipe TOML (see recipes/embedder.toml); omitted = every default.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe field: --set train.epochs=2 --set data.triplets='[\"t.jsonl\"]' "
                     "(repeatable). [default: none]"),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore checkpoints of an interrupted run in output.dir.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune an embedder on triplets / pairs (MNRL with hard negatives by default); keeps the best checkpoint."""
    logging.getLogger("ragtune.train").setLevel(logging.INFO)
    try:
        from ragtune.train.embedder import EVALUATOR_NAME, load_embedder_recipe, train_embedder

        parsed = load_embedder_recipe(recipe, set_)
        # Trainer logs go to stderr, so that stdout holds only the result (JSON with --json).
        with contextlib.redirect_stdout(sys.stderr):
            run = train_embedder(parsed, resume=not fresh)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print("interrupted — run the same command again to resume from the last checkpoint")
        raise typer.Exit(130) from None
    if as_json:
        emit({k: v for k, v in run.items() if k != "log_history"})
        return
    metric = f"{EVALUATOR_NAME}_cosine_ndcg@10"
    data, metrics = run["data"], run["metrics"]
    before, after = metrics["heldout_before"].get(metric), metrics["heldout_after"].get(metric)
    table = Table(title=f"embedder trained: {run['run_dir']}", show_header=False)
    table.add_row("queries (train / held out)", f"{data['train_queries']} / {data['heldout_queries']}")
    table.add_row("steps", str(metrics["global_step"]))
    table.add_row("seconds", f"{metrics['train_seconds']:.0f}")
    if before is not None and after is not None:
        table.add_row("held-out nDCG@10", f"{before:.4f} → {after:.4f}")
    console.print(table)
    console.print(f"use it: ragtune kb reembed --kb KB --embedder {run['run_dir']}", highlight=False, markup=False)


@app.command("reranker")
def train_reranker_cmd(
    recipe: Annotated[
        Path | None, typer.Argument(help="Recipe TOML (see recipes/reranker.toml); omitted = every default.")
    ] = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory for the trained cross-encoder. [default: the recipe's output.dir]")] = None,
    kb: KbOpt = None,
    beir: Annotated[
        Path | None, typer.Option(help="Train on a BEIR data set's qrels (the KB is built from its corpus if empty). "
                                  "[default: the recipe's data.beir]")
    ] = None,
    split: Annotated[str | None, typer.Option(help="BEIR qrels split to train on [default: train].")] = None,
    heldout: Annotated[
        float | None, typer.Option(help="Share of BEIR queries held out for evaluation (ids saved) [default: 0.2].")
    ] = None,
    dev: Annotated[float | None, typer.Option(help="Share of queries used for early stopping [default: 0.1].")] = None,
    pairs: Annotated[
        Path | None, typer.Option(help='JSONL of {"query", "positive"} (or "chunk_id"/"document_id") pairs. '
                                  "[default: the recipe's data.pairs]")
    ] = None,
    base_model: Annotated[str | None, typer.Option(help="Encoder to start from [default: bundled MiniLM].")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs. [default: the recipe's train.epochs: 2]")
                      ] = None,
    negatives: Annotated[int | None, typer.Option(
        help="Hard negatives per query. [default: the recipe's data.negatives: 4]")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Pairs per training step. [default: the recipe's train.batch_size: 32]")] = None,
    learning_rate: Annotated[float | None, typer.Option(
        help="Peak learning rate. [default: the recipe's train.learning_rate: 5e-5]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a cross-encoder reranker on retriever-mined hard negatives; use it with --rerank cross-encoder:OUT."""
    from ragtune.train.reranker import load_reranker_recipe, run_reranker_recipe

    # Flags are shorthands for recipe fields, applied after the file and before --set.
    flags = {"output.dir": out, "data.kb": kb, "data.beir": beir, "data.split": split, "data.heldout": heldout,
             "data.dev": dev, "data.pairs": pairs, "model.base_model": base_model, "train.epochs": epochs,
             "data.negatives": negatives, "train.batch_size": batch_size, "train.learning_rate": learning_rate}
    overrides = [f"{key}={_toml(value)}" for key, value in flags.items() if value is not None] + list(set_ or [])
    try:
        parsed = load_reranker_recipe(recipe, overrides)
        with progress_bar(as_json) as progress:
            task = progress.add_task("preparing", total=None)

            def update(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total)

            # Trainer logs go to stderr, so that stdout holds only the result (JSON with --json).
            with contextlib.redirect_stdout(sys.stderr):
                run = run_reranker_recipe(parsed, on_progress=update)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — run the same command again to resume from the last checkpoint in "
                          f"{parsed.output.dir}")
        raise typer.Exit(130) from None
    if as_json:
        emit({k: v for k, v in run.items() if k != "log_history"})
        return
    data, metrics = run["data"], run["metrics"]
    console.print(f"trained on {data['triplets']} queries ({data['pairs']} pairs) in {metrics['train_seconds']:.0f} s; "
                  f"dev nDCG@10 {metrics['dev_before'].get('dev_ndcg@10', float('nan')):.4f} → "
                  f"{metrics['dev_after'].get('dev_ndcg@10', float('nan')):.4f}")
    console.print(f"use it: ragtune search QUERY --rerank cross-encoder:{parsed.output.dir}", highlight=False,
                  markup=False)


def _toml(value: Any) -> str:
    """A flag's value as TOML for a recipe override (paths and words quoted)."""
    import json

    return json.dumps(str(value)) if isinstance(value, (str, Path)) else str(value)
