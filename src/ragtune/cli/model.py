"""The ``ragtune model`` commands: merge adapters, evaluate trained models, score reward models."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragtune.cli.common import JsonOpt, console, emit, fail
from ragtune.errors import RagtuneError

app = typer.Typer(help="Merge and evaluate trained models; score reward models.", no_args_is_help=True)


@app.command("merge")
def merge_command(
    run: Annotated[Path, typer.Argument(help="Run directory written by 'ragtune train'.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the merged model (new or empty).")],
    base: Annotated[str | None, typer.Option(help="Base model. [default: the one recorded in run.json]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge a LoRA/DoRA/QLoRA adapter into a fresh, unquantised base; the result loads with --llm-model."""
    try:
        from ragtune.train.merge import merge_adapter

        path = merge_adapter(run, out, base=base)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if as_json:
        emit({"merged": str(path), "run": str(run)})
    else:
        console.print(f"merged {run} into {path}\nserve it: ragtune ask \"...\" --llm local --llm-model {path}")


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Argument(help="Run directory (adapter or full model) or merged model directory.")],
    data: Annotated[
        Path, typer.Option("--data", help="Held-out chat examples (alpaca, messages, sharegpt, feedback).")
    ],
    base: Annotated[str | None, typer.Option(help="Base model to compare with. [default: the one in run.json]")] = None,
    judge: Annotated[
        str, typer.Option(help="Win-rate judge: 'overlap' (ROUGE-L vs reference) or 'llm' (--judge-model).")
    ] = "overlap",
    judge_model: Annotated[str | None, typer.Option(help="Local model that judges. [default: the base model]")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per answer.")] = 64,
    limit: Annotated[int, typer.Option(help="Evaluate only the first N examples (0 = all).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the report to this JSON file. (optional)")
                   ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Perplexity, ROUGE-L, exact match and win rate (position-swapped) of a trained model against its base."""
    if judge not in ("overlap", "llm"):
        fail(f"--judge {judge!r}: choose 'overlap' or 'llm'", as_json)
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
        fail(str(exc), as_json)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    if as_json:
        emit(report)
        return
    table = Table(title=f"{model} vs {report['base_model']} on {report['examples']} examples")
    for column in ("metric", "tuned", "base"):
        table.add_column(column)
    for metric in ("perplexity", "rouge_l", "exact_match"):
        table.add_row(metric, f"{report['tuned'][metric]:.4f}", f"{report['base'][metric]:.4f}")
    win = report["win_rate_vs_base"]
    table.add_row(f"win rate ({win['judge']})", f"{win['rate']:.3f}", f"{win['wins']}W {win['losses']}L {win['ties']}T")
    console.print(table)


@app.command("score")
def score_command(
    model: Annotated[Path, typer.Argument(help="Reward model run directory ('ragtune train reward').")],
    data: Annotated[Path, typer.Option("--data", help="Held-out pairs: prompt/chosen/rejected or 👍/👎 feedback.")],
    base: Annotated[str | None, typer.Option(help="Base model [default: the one recorded in run.json].")] = None,
    limit: Annotated[int, typer.Option(help="Score only the first N pairs (0 = all).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the report to this JSON file. (optional)")
                   ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pairwise accuracy of a reward model on held-out pairs (chosen scored above rejected), against a
    length-only baseline; by kind and language where the pairs say them."""
    try:
        from ragtune.train.reward import score_pairs

        with console.status("scoring pairs…"), contextlib.redirect_stdout(sys.stderr):
            report = score_pairs(model, data, base=base, limit=limit)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    if as_json:
        emit(report)
        return
    baseline = report["length_baseline"]
    table = Table(title=f"{model} on {report['pairs']} pairs of {data}")
    for column in ("pairs", "n", "reward model", f"length ({baseline['rule']})"):
        table.add_column(column)
    table.add_row("all", str(report["pairs"]), f"{report['accuracy']:.3f}", f"{baseline['accuracy']:.3f}")
    for tag in ("by_kind", "by_language"):
        for value, row in report.get(tag, {}).items():
            table.add_row(value, str(row["pairs"]), f"{row['accuracy']:.3f}", f"{row['length_baseline']:.3f}")
    console.print(table)
    console.print(f"mean margin (chosen - rejected): {report['mean_margin']:.3f}")
