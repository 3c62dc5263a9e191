"""The ``ragtune loop`` commands: the flywheel of one knowledge base (init, run, status, history, rollback, prune)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import JsonOpt, KbOpt, console, emit, err_console, fail, open_kb, progress_bar
from ragtune.errors import RagtuneError

app = typer.Typer(help="Feedback → datasets → retrain → evaluate → promote or reject, per knowledge base.",
                  no_args_is_help=True)

StageArg = Annotated[str, typer.Option("--stage", help="embedder, reranker, llm or demonstrations.")]


def _with_progress(kb: Path | None, as_json: bool, action: Any) -> Any:
    """Open the KB and run ``action(base, update)`` under a progress bar; errors and Ctrl-C end cleanly.

    What the work prints goes to stderr (transformers' trainer prints its log lines): stdout carries the command's
    result only, so ``--json`` output parses."""
    try:
        base = open_kb(kb)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    try:
        with base, progress_bar(as_json) as progress, contextlib.redirect_stdout(sys.stderr):
            task = progress.add_task("working", total=None)

            def update(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total or None)

            return action(base, update)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/] — nothing that serves changed unless a promotion was recorded; run "
                          "'ragtune loop run' again to resume")
        raise typer.Exit(130) from None


@app.command("init")
def loop_init(
    kb: KbOpt = None,
    recipe: Annotated[Path | None, typer.Option(
        "--recipe", help="Loop recipe (TOML, see recipes/loop.toml). [default: the defaults: embedder and "
        "demonstrations stages]")] = None,
    force: Annotated[bool, typer.Option("--force", help="Freeze a new eval set although the loop is set up "
                                        "(versions and history are kept).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set up the loop: keep the recipe, freeze the eval set (held-out rated answers, synthetic questions,
    unanswerable probes) and record what serves now as each stage's first version."""
    from ragtune.loop import init_loop

    status = _with_progress(kb, as_json, lambda base, update: init_loop(base, recipe, force=force,
                                                                         on_progress=update))
    if as_json:
        emit(status)
        return
    evalset = status["evalset"]
    console.print(f"eval set frozen: {evalset['rows']} questions ({evalset['from_feedback']} rated answers held "
                  f"out, {evalset['synthetic']} synthetic, {evalset['unanswerable']} unanswerable probes)",
                  highlight=False)
    for note in evalset.get("notes", []):
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    _stages_table(status)


@app.command("run")
def loop_run(
    kb: KbOpt = None,
    stage: Annotated[list[str] | None, typer.Option(
        "--stage", help="Only this stage (repeatable). [default: every enabled stage]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """New feedback → datasets → train the enabled stages → evaluate → promote or reject. Resumes an interrupted
    run first."""
    from ragtune.loop import run_loop

    run = _with_progress(kb, as_json, lambda base, update: run_loop(base, stages=stage, on_progress=update))
    if as_json:
        emit(run)
        return
    for name in run["stages"]:
        record = run["phases"][name]
        outcome = record.get("outcome", "?")
        colour = {"promoted": "green", "rejected": "red"}.get(outcome, "yellow")
        versions = f" {record['challenger']} vs {record['champion']}" if record.get("challenger") else ""
        console.print(f"[bold]{name}[/]{escape(versions)}: [{colour}]{outcome}[/]", highlight=False)
        for reason in record.get("verdict", {}).get("reasons", []):
            console.print(f"  {escape(reason)}", highlight=False)
        hygiene = record.get("hygiene") or {}
        if hygiene:
            pii = ", ".join(f"{k} {v}" for k, v in hygiene.get("pii", {}).items()) or "none"
            console.print(f"  [dim]data: {hygiene['rows_in']} rows → {hygiene['rows_out']} (eval questions dropped "
                          f"{hygiene['leaked_exact'] + hygiene['leaked_near']}, repeats {hygiene['duplicates']}, "
                          f"personal data redacted: {escape(pii)})[/]", highlight=False)


@app.command("status")
def loop_status(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Each stage's champion, the feedback waiting for it, and the last decisions."""
    from ragtune.loop import loop_status as status_of

    status = _with_progress(kb, as_json, lambda base, update: status_of(base))
    if as_json:
        emit(status)
        return
    fb = status["feedback"]
    console.print(f"feedback: {fb['up']} 👍 · {fb['down']} 👎 · {fb['corrections']} corrections "
                  f"({fb['held_out']} held out for evaluation); eval set {status['evalset']['rows']} questions",
                  highlight=False)
    _stages_table(status)
    if status.get("active_run"):
        active = status["active_run"]
        phases = ", ".join(f"{s} {p}" for s, p in active["phases"].items())
        console.print(f"[yellow]run {escape(active['run'])} was interrupted[/] ({escape(phases)}) — 'ragtune loop run' "
                      "resumes it", highlight=False)


def _stages_table(status: dict[str, Any]) -> None:
    table = Table("stage", "enabled", "champion", "versions", "new feedback", "last decision")
    for name, stage in status["stages"].items():
        last = stage.get("last")
        decided = f"{last['verdict']} {last.get('challenger') or ''} ({last['time'][:16]})" if last else ""
        table.add_row(name, "yes" if stage["enabled"] else "no", stage["champion"] or "?", str(stage["versions"]),
                      str(stage["new_feedback"]), escape(decided))
    console.print(table)


@app.command("history")
def loop_history(
    kb: KbOpt = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage's records. [default: all]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every decision: metrics, confidence intervals, data hashes, seeds, the verdict and why."""
    from ragtune.loop import loop_history as history_of

    entries = _with_progress(kb, as_json, lambda base, update: history_of(base))
    if stage is not None:
        entries = [e for e in entries if e.get("stage") == stage]
    if as_json:
        emit(entries)
        return
    if not entries:
        console.print("no decisions yet — 'ragtune loop run' makes the first")
        return
    for entry in entries:
        if entry.get("kind") == "init":
            console.print(f"[dim]{entry['time'][:19]}[/] eval set frozen: {entry['evalset']['rows']} questions "
                          f"(sha256 {entry['evalset']['sha256'][:12]})", highlight=False)
            continue
        colour = {"promoted": "green", "rejected": "red", "rolled back": "cyan"}.get(entry["verdict"], "yellow")
        where = f"run {entry['run']} " if entry.get("run") else ""
        versions = " vs ".join(v for v in (entry.get("challenger"), entry.get("champion")) if v)
        console.print(f"[dim]{entry['time'][:19]}[/] {escape(where)}[bold]{entry['stage']}[/] {escape(versions)}: "
                      f"[{colour}]{entry['verdict']}[/]", highlight=False)
        for reason in entry.get("why", []):
            console.print(f"  {escape(reason)}", highlight=False)
        data = entry.get("data") or {}
        if data.get("sha256"):
            hashes = ", ".join(f"{k} {v[:12]}" for k, v in data["sha256"].items())
            console.print(f"  [dim]{data.get('rows')} rows from feedback {_ids(data['feedback']['ids'])}; "
                          f"{escape(hashes)}; seed {entry.get('seed')}[/]", highlight=False)


def _ids(ranges: list[list[int]]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges[:6]) + ("…" if len(ranges) > 6 else "")


@app.command("rollback")
def loop_rollback(
    stage: StageArg,
    kb: KbOpt = None,
    to: Annotated[str | None, typer.Option("--to", help="The version to serve, e.g. v001. [default: the champion "
                                           "before the current one]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve an earlier version of a stage again (atomic; recorded in the history)."""
    from ragtune.loop import rollback

    done = _with_progress(kb, as_json, lambda base, update: rollback(base, stage, to=to, on_progress=update))
    if as_json:
        emit(done)
        return
    console.print(f"{stage}: {done['from']} → {done['to']} (now serving)", highlight=False)


@app.command("prune")
def loop_prune(
    kb: KbOpt = None,
    keep: Annotated[int, typer.Option(help="Newest versions kept per stage besides the champion and v000.")] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Delete the files of old versions (the champion, v000 and the newest are kept; records stay)."""
    from ragtune.loop import prune

    removed = _with_progress(kb, as_json, lambda base, update: prune(base, keep=keep))
    if as_json:
        emit(removed)
        return
    if not removed:
        console.print("nothing to prune")
    for stage, versions in removed.items():
        console.print(f"{stage}: pruned {', '.join(versions)}", highlight=False)
