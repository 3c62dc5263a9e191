"""The ``ragtune train`` and ``ragtune model`` commands for LLM fine-tuning (registered on the main app)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ragtune.cli import JsonOpt, _emit, _fail, console, model_app, train_app
from ragtune.errors import RagtuneError

RecipeArg = Annotated[
    Path | None, typer.Argument(help="Recipe TOML file (see recipes/); omitted = every default.", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe field: --set lora.r=32 --set data.path=train.jsonl (repeatable)."),
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
            else:
                from ragtune.train.preference import train_preference

                record = train_preference(recipe, resume=resume)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    _report_run(record, as_json)


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
    if as_json:
        _emit(summary)
        return
    table = Table(title=f"{record['method']} ({record['finetune']}) finished", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"serve it: ragtune ask \"...\" --llm local --llm-adapter {summary['run']}")


@train_app.command("sft")
def train_sft_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """Supervised fine-tuning: LoRA, DoRA, QLoRA or full (model.finetune), on assistant tokens only."""
    _train("sft", recipe, set_, resume, as_json)


@train_app.command("dpo")
def train_dpo_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """Direct preference optimisation on prompt/chosen/rejected pairs."""
    _train("dpo", recipe, set_, resume, as_json)


@train_app.command("kto")
def train_kto_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """KTO on prompt/completion/label rows (thumbs up/down feedback)."""
    _train("kto", recipe, set_, resume, as_json)


@train_app.command("orpo")
def train_orpo_command(
    recipe: RecipeArg = None, set_: SetOpt = None, resume: ResumeOpt = False, as_json: JsonOpt = False
) -> None:
    """ORPO (SFT and preference in one step, no reference model) on prompt/chosen/rejected pairs."""
    _train("orpo", recipe, set_, resume, as_json)


@model_app.command("merge")
def merge_command(
    run: Annotated[Path, typer.Argument(help="Run directory written by 'ragtune train'.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the merged model (new or empty).")],
    base: Annotated[str | None, typer.Option(help="Base model (default: the one recorded in run.json).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge a LoRA/DoRA/QLoRA adapter into a fresh, unquantised base; the result loads with --llm-model."""
    try:
        from ragtune.train.merge import merge_adapter

        path = merge_adapter(run, out, base=base)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    if as_json:
        _emit({"merged": str(path), "run": str(run)})
    else:
        console.print(f"merged {run} into {path}\nserve it: ragtune ask \"...\" --llm local --llm-model {path}")


@model_app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Argument(help="Run directory (adapter or full model) or merged model directory.")],
    data: Annotated[
        Path, typer.Option("--data", help="Held-out chat examples (alpaca, messages, sharegpt, feedback).")
    ],
    base: Annotated[str | None, typer.Option(help="Base model to compare with (default: the one in run.json).")] = None,
    judge: Annotated[
        str, typer.Option(help="Win-rate judge: 'overlap' (ROUGE-L vs reference) or 'llm' (--judge-model).")
    ] = "overlap",
    judge_model: Annotated[str | None, typer.Option(help="Local model that judges (default: the base model).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per answer.")] = 64,
    limit: Annotated[int, typer.Option(help="Evaluate only the first N examples (0 = all).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the report to this JSON file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Perplexity, ROUGE-L, exact match and win rate (position-swapped) of a trained model against its base."""
    if judge not in ("overlap", "llm"):
        _fail(f"--judge {judge!r}: choose 'overlap' or 'llm'", as_json)
    try:
        from ragtune.train.evaluation import evaluate_model

        with console.status("generating answers…") as status, contextlib.redirect_stdout(sys.stderr):

            def progress(name: str, done: int, total: int) -> None:
                status.update(f"{name}: {done}/{total} answers")

            report = evaluate_model(
                model, data, base=base, judge=judge,  # type: ignore[arg-type]
                judge_model=judge_model, max_new_tokens=max_new_tokens, limit=limit, progress=progress,
            )
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    if as_json:
        _emit(report)
        return
    table = Table(title=f"{model} vs {report['base_model']} on {report['examples']} examples")
    for column in ("metric", "tuned", "base"):
        table.add_column(column)
    for metric in ("perplexity", "rouge_l", "exact_match"):
        table.add_row(metric, f"{report['tuned'][metric]:.4f}", f"{report['base'][metric]:.4f}")
    win = report["win_rate_vs_base"]
    table.add_row(f"win rate ({win['judge']})", f"{win['rate']:.3f}", f"{win['wins']}W {win['losses']}L {win['ties']}T")
    console.print(table)
