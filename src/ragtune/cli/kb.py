"""The ``ragtune kb`` commands: inspect, verify, delete from and re-embed a knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import (
    JsonOpt,
    KbOpt,
    console,
    emit,
    err_console,
    fail,
    kb_path,
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
    embedder: Annotated[str, typer.Option("--embedder", help="The new embedding model (name, directory or hub id).")],
    kb: KbOpt = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Chunks encoded and committed per step [default: 4 × embed_batch_size].")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every chunk with another model and switch the KB to it in one step (safe to interrupt)."""
    try:
        base = open_kb(kb)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    old = base.store.embedder_name
    try:
        with base, progress_bar(as_json) as progress:
            task = progress.add_task(f"re-embedding with {escape(embedder)}", total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report: dict[str, Any] = base.reembed(embedder, batch_size=batch_size, on_progress=update)
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
    console.print(f"re-embedded {report['chunks']} chunks: {escape(old)} → [bold]{escape(report['embedder'])}[/] "
                  f"({report['dim']}-d, checkpoint {report['checkpoint'][:12] or 'n/a'}) in {report['seconds']:.1f} s",
                  highlight=False)


@app.command("migrate")
def kb_migrate(
    to: Annotated[str, typer.Option("--to", help="The target store: local, postgresql://user@host/db, "
                                    "milvus://host:19530 or package.module:Class.")],
    kb: KbOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder of the copy [default: KB-KIND beside the KB].")
                   ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The copy's name in a shared store [default: the KB's].")
                    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a knowledge base to another store with its vectors (no re-embedding), then check counts and results.

    The source is only read. Re-run the same command to resume an interrupted copy."""
    from ragtune.migrate import migrate

    try:
        with progress_bar(as_json) as progress:
            task = progress.add_task("copying documents", total=None)
            report = migrate(kb_path(kb), to, out=out, name=name,
                             on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if as_json:
        emit(report.to_dict())
    else:
        console.print(f"copied {report.copied} documents ({report.chunks} chunks, {report.feedback} ratings; "
                      f"{report.skipped} already there) to {escape(report.target)} in {report.seconds:.1f} s — "
                      f"folder {escape(report.out)}", highlight=False)
        console.print(f"check: counts {'match' if report.counts_match else 'DIFFER'}; top-10 identical on "
                      f"{report.identical_top10.get('dense', 0)}/{report.queries} dense and "
                      f"{report.identical_top10.get('sparse', 0)}/{report.queries} sparse queries "
                      f"(overlap {report.top10_overlap})", highlight=False)
        for problem in report.problems:
            err_console.print(f"[red]problem[/] {escape(problem)}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
