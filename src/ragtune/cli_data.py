"""The ``ragtune data`` commands, ``ragtune train embedder`` and ``ragtune kb reembed`` (registered on the main app)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli import (
    JsonOpt,
    KbOpt,
    _emit,
    _fail,
    _kb_path,
    _open,
    _progress,
    app,
    console,
    err_console,
    kb_app,
    train_app,
)
from ragtune.errors import RagtuneError

data_app = typer.Typer(help="Build training data: synthetic queries, mined and generated hard negatives.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

OutOpt = Annotated[Path, typer.Option("--out", help="JSONL file to write.")]
LlmBatchOpt = Annotated[
    int, typer.Option(help="Prompts the LLM writes together (batched on the local model; replies cached per batch).")
]
PairsOpt = Annotated[
    Path, typer.Option("--pairs", help='JSONL of {"query", "positive"} (or "chunk_id"/"document_id") pairs.')
]


def _written(out: Path, rows: Any, summary: dict[str, Any], as_json: bool, message: str) -> None:
    """Write the rows as JSONL and report: the summary (plus ``out``) as JSON, or ``message`` filled from it."""
    from ragtune.train.negatives import write_jsonl

    write_jsonl(out, rows)
    summary = {**summary, "out": str(out)}
    if as_json:
        _emit(summary)
        return
    console.print(message.format(**{**summary, "out": escape(str(out))}), highlight=False)


@data_app.command("synth-queries")
def data_synth_queries(
    out: OutOpt,
    kb: KbOpt = None,
    per_chunk: Annotated[int, typer.Option(help="Questions the LLM writes per chunk.")] = 2,
    top_k: Annotated[int, typer.Option(help="Round trip: keep a question only if its chunk is in the top k.")] = 5,
    mode: Annotated[str, typer.Option(help="Retrieval mode of the round trip: hybrid, dense or sparse.")] = "hybrid",
    limit: Annotated[int, typer.Option(help="Only the first N chunks (0 = all).")] = 0,
    sample: Annotated[int, typer.Option(help="N chunks picked at random from the whole KB (0 = all).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed of --sample.")] = 0,
    batch_size: LlmBatchOpt = 16,
    llm: Annotated[str | None, typer.Option("--llm", help="local, openai or llamacpp.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name, directory or .gguf path.")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """LLM-written questions for the KB's chunks, de-duplicated and kept only if retrieval finds their chunk."""
    from ragtune.train.synthetic import synth_queries

    try:
        with _open(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url) as base, \
                _progress(as_json) as progress:
            task = progress.add_task("writing questions", total=None)
            queries, report = synth_queries(
                base, per_chunk=per_chunk, top_k=top_k, mode=mode, limit=limit, sample=sample, seed=seed,
                batch_size=batch_size,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    _written(out, queries, report.to_dict(), as_json,
             "{kept} questions for {chunks} chunks written to {out} ({generated} generated, {duplicates} duplicates "
             "or echoes, {not_found} dropped by the round trip)")


@data_app.command("feedback-pairs")
def data_feedback_pairs(out: OutOpt, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Training pairs from answers users rated 👍: the question and each source the answer cited.

    Feed them to 'ragtune data mine-negatives --pairs' and 'ragtune train embedder' like any other pairs."""
    from ragtune.feedback import feedback_pairs

    try:
        pairs = feedback_pairs(_kb_path(kb))
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    _written(out, pairs, {"pairs": len(pairs), "answers": len({p["query_id"] for p in pairs})}, as_json,
             "{pairs} pairs from {answers} 👍 answers written to {out}")


@data_app.command("mine-negatives")
def data_mine_negatives(
    pairs: PairsOpt,
    out: OutOpt,
    kb: KbOpt = None,
    negatives: Annotated[int, typer.Option(help="Hard negatives per query.")] = 4,
    rank_window: Annotated[str, typer.Option(help="Ranks to take negatives from, FIRST:LAST (1-based).")] = "3:50",
    margin: Annotated[
        float | None, typer.Option(help="Drop candidates scoring above MARGIN × the positive's (likely positives).")
    ] = 0.95,
    mode: Annotated[str, typer.Option(help="Retrieval mode: hybrid, dense or sparse.")] = "hybrid",
    as_json: JsonOpt = False,
) -> None:
    """Hard negatives from the KB's own retriever (never a positive; margin-filtered), as triplets."""
    from ragtune.train.negatives import mine_hard_negatives, read_pairs

    first, sep, last = rank_window.partition(":")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        _fail(f"--rank-window {rank_window!r}: write it as FIRST:LAST, e.g. 3:50", as_json)
    try:
        loaded = read_pairs(pairs)
        with _open(kb) as base, _progress(as_json) as progress:
            task = progress.add_task("mining hard negatives", total=len(loaded))
            triplets = mine_hard_negatives(
                base, loaded, n_negatives=negatives, rank_window=(int(first), int(last)),
                margin=margin if margin else None, mode=mode,
                on_progress=lambda done, total: progress.update(task, completed=done),
            )
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    summary = {"pairs": len(loaded), "triplets": len(triplets), "negatives": sum(len(t.negatives) for t in triplets),
               "dropped_by_margin": sum(t.dropped_by_margin for t in triplets)}
    _written(out, triplets, summary, as_json, "{triplets} triplets ({negatives} negatives, {dropped_by_margin} "
             "candidates dropped by the margin) from {pairs} pairs written to {out}")


@data_app.command("gen-negatives")
def data_gen_negatives(
    pairs: PairsOpt,
    out: OutOpt,
    kb: KbOpt = None,
    per_query: Annotated[int, typer.Option(help="Generated negatives per query.")] = 1,
    batch_size: LlmBatchOpt = 16,
    llm: Annotated[str | None, typer.Option("--llm", help="local, openai or llamacpp.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name, directory or .gguf path.")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """LLM-written "plausible but wrong" passages (same topic, wrong key detail), as triplets tagged 'generated'.

    The KB supplies the LLM settings and the reply cache; pairs need their positive as text."""
    from ragtune.train.negatives import generate_negatives, read_pairs

    try:
        loaded = read_pairs(pairs)
        with _open(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url) as base, \
                _progress(as_json) as progress:
            task = progress.add_task("writing negatives", total=len(loaded))
            triplets = generate_negatives(base.llm_client(), loaded, per_query=per_query, batch_size=batch_size,
                                          on_progress=lambda done, total: progress.update(task, completed=done))
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    summary = {"pairs": len(loaded), "triplets": len(triplets), "negatives": sum(len(t.negatives) for t in triplets)}
    _written(out, triplets, summary, as_json,
             "{negatives} generated negatives for {triplets} of {pairs} queries written to {out}")


@kb_app.command("reembed")
def kb_reembed(
    embedder: Annotated[str, typer.Option("--embedder", help="The new embedding model (name, directory or hub id).")],
    kb: KbOpt = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Chunks encoded and committed per step [default: 4 × embed_batch_size].")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every chunk with another model and switch the KB to it in one step (safe to interrupt)."""
    try:
        base = _open(kb)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    old = base.store.embedder_name
    try:
        with base, _progress(as_json) as progress:
            task = progress.add_task(f"re-embedding with {escape(embedder)}", total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report: dict[str, Any] = base.reembed(embedder, batch_size=batch_size, on_progress=update)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/] — the knowledge base still uses its old embedder; run the same "
                          "command again to resume")
        raise typer.Exit(130) from None
    report["previous_embedder"] = old
    if as_json:
        _emit(report)
        return
    console.print(f"re-embedded {report['chunks']} chunks: {escape(old)} → [bold]{escape(report['embedder'])}[/] "
                  f"({report['dim']}-d, checkpoint {report['checkpoint'][:12] or 'n/a'}) in {report['seconds']:.1f} s",
                  highlight=False)


@train_app.command("embedder")
def train_embedder_cmd(
    recipe: Annotated[
        Path | None, typer.Argument(help="Recipe TOML (see recipes/embedder.toml); omitted = every default.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe field: --set train.epochs=2 --set data.triplets='[\"t.jsonl\"]'"),
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
        _fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print("interrupted — run the same command again to resume from the last checkpoint")
        raise typer.Exit(130) from None
    if as_json:
        _emit({k: v for k, v in run.items() if k != "history"})
        return
    metric = f"{EVALUATOR_NAME}_cosine_ndcg@10"
    before, after = run["heldout_before"].get(metric), run["heldout_after"].get(metric)
    table = Table(title=f"embedder trained: {run['run_dir']}", show_header=False)
    table.add_row("queries (train / held out)", f"{run['train_queries']} / {run['heldout_queries']}")
    table.add_row("steps", str(run["steps"]))
    table.add_row("seconds", f"{run['train_seconds']:.0f}")
    if before is not None and after is not None:
        table.add_row("held-out nDCG@10", f"{before:.4f} → {after:.4f}")
    console.print(table)
    console.print(f"use it: ragtune kb reembed --kb KB --embedder {run['run_dir']}", highlight=False, markup=False)
