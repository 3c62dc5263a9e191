"""The ``ragtune kb`` commands: inspect, verify, delete from, re-embed and adapt a knowledge base."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import (
    JsonOpt,
    KbOpt,
    LlmBaseUrlOpt,
    LlmModelOpt,
    LlmOpt,
    console,
    emit,
    err_console,
    fail,
    open_kb,
    progress_bar,
    with_kb,
)
from ragtune.errors import RagtuneError

app = typer.Typer(help="Inspect and manage a knowledge base.", no_args_is_help=True)


@app.command("stats")
def kb_stats(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Counts of documents, chunks and failures, and the embedder."""
    stats = with_kb(kb, as_json, lambda base: base.stats())
    if as_json:
        emit(stats)
        return
    table = Table(show_header=False)
    for key, value in stats.items():
        table.add_row(key, escape(str(value)))
    console.print(table)


@app.command("docs")
def kb_docs(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """List documents with their status, chunk count and error."""
    docs = with_kb(kb, as_json, lambda base: base.documents())
    rows = [
        {"id": d.id, "source": d.uri, "type": d.source_type, "chunks": d.chunk_count, "status": d.status,
         "error": d.error, "duplicate_of": d.duplicate_of, "version": d.version}
        for d in docs
    ]
    if as_json:
        emit(rows)
        return
    table = Table("id", "source", "type", "chunks", "status", "error")
    for r in rows:
        status = r["status"] + (f" of {r['duplicate_of']}" if r["duplicate_of"] else "")
        table.add_row(*(escape(str(v)) for v in (r["id"], r["source"], r["type"] or "", r["chunks"], status,
                                                  r["error"] or "")))
    console.print(table)


@app.command("rm")
def kb_rm(
    document_ids: Annotated[list[str], typer.Argument(help="Document ids (see 'ragtune kb docs').")],
    kb: KbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Delete documents and their chunks."""
    results = with_kb(kb, as_json, lambda base: {doc_id: base.delete(doc_id) for doc_id in document_ids})
    missing = [d for d, ok in results.items() if not ok]
    if as_json:
        emit({"deleted": [d for d, ok in results.items() if ok], "not_found": missing})
    else:
        for doc_id, ok in results.items():
            console.print(f"deleted {escape(doc_id)}" if ok
                          else f"[yellow]no document {escape(doc_id)}[/] — see 'ragtune kb docs'")
    if missing:
        raise typer.Exit(1)


@app.command("verify")
def kb_verify(
    kb: KbOpt = None,
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild the indexes from the database if needed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check that the catalog, chunks and indexes agree."""
    report = with_kb(kb, as_json, lambda base: base.verify(repair=repair))
    if as_json:
        emit(report)
    elif report["ok"]:
        console.print(f"[green]ok[/] — {report['documents']} documents, {report['chunks']} chunks, indexes in sync")
    else:
        for problem in report["problems"]:
            err_console.print(f"[red]problem[/] {escape(problem)}", highlight=False)
        err_console.print("run 'ragtune kb verify --repair' to rebuild the indexes from the database")
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("reembed")
def kb_reembed(
    embedder: Annotated[str | None, typer.Option(
        "--embedder", help="The new embedding model (name, directory or hub id) [default: the KB's own].")] = None,
    kb: KbOpt = None,
    precision: Annotated[str | None, typer.Option(
        help="Vector precision: int8, fp32 or auto [default: auto for a new model, the KB's for its own].")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Chunks encoded and committed per step [default: 4 × embed_batch_size].")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every chunk with another model or precision and switch the KB to it in one step (safe to
    interrupt)."""
    if embedder is None and precision is None:
        fail("give --embedder MODEL and/or --precision int8|fp32 — what should the KB be re-embedded with?", as_json)
    try:
        base = open_kb(kb)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    old = base.store.embedder_name
    try:
        with base, progress_bar(as_json) as progress:
            task = progress.add_task(f"re-embedding with {escape(embedder or old)}", total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report: dict[str, Any] = base.reembed(embedder, precision=precision, batch_size=batch_size,
                                                  on_progress=update)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/] — the knowledge base still uses its old embedder; run the same "
                          "command again to resume")
        raise typer.Exit(130) from None
    report["previous_embedder"] = old
    if as_json:
        emit(report)
        return
    precision_note = f", {report['precision']}" if report.get("precision") else ""
    console.print(f"re-embedded {report['chunks']} chunks: {escape(old)} → [bold]{escape(report['embedder'])}[/] "
                  f"({report['dim']}-d{precision_note}, checkpoint {report['checkpoint'][:12] or 'n/a'}) in "
                  f"{report['seconds']:.1f} s", highlight=False)


@app.command("adapt")
def kb_adapt(
    kb: KbOpt = None,
    budget: Annotated[float, typer.Option(help="Minutes to spend: decides how many chunks get questions and how "
                                               "long training runs.")] = 60.0,
    per_chunk: Annotated[int, typer.Option(help="Questions the LLM writes per chunk.")] = 2,
    min_gain: Annotated[float, typer.Option(help="Held-out nDCG@10 the new embedder must add before the KB "
                                                 "switches to it.")] = 0.005,
    fresh: Annotated[bool, typer.Option(help="Start another round even if the last one finished.")] = False,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Adapt the KB's embedder to its own documents, no labels needed: questions written for its chunks, hard
    negatives from its retriever, fine-tuning, and a re-embed only if held-out questions retrieve better.
    Resumable: run the same command again after an interruption."""
    from ragtune.train.adapt import AdaptConfig, adapt_knowledge_base

    try:
        config = AdaptConfig(budget_minutes=budget, per_chunk=per_chunk, min_gain=min_gain)
        base = open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    try:
        with base, progress_bar(as_json) as progress:
            task = progress.add_task("adapting", total=None)

            def update(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total)

            report = adapt_knowledge_base(base, config, fresh=fresh, on_progress=update)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/] — the knowledge base is unchanged; run the same command again to "
                          "resume")
        raise typer.Exit(130) from None
    if as_json:
        emit(report)
        return
    before, after = report["before"]["ndcg_cut_10"], report["after"]["ndcg_cut_10"]
    verdict = (f"re-embedded with [bold]{escape(report['decision']['embedder'])}[/]"
               if report["decision"]["reembedded"] else "kept the current embedder (not better enough)")
    console.print(f"{report['questions']['kept']} questions from {report['questions']['chunks']} chunks; held-out "
                  f"nDCG@10 {before:.3f} → {after:.3f} ({report['gain']:+.3f}): {verdict}", highlight=False)
