"""The everyday commands: init, ingest, search and ask."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ragtune.cli.common import (
    EmbedderOpt,
    JsonOpt,
    KbOpt,
    LlmBaseUrlOpt,
    LlmModelOpt,
    LlmOpt,
    RerankOpt,
    RewriteOpt,
    console,
    emit,
    err_console,
    fail,
    hit_json,
    open_kb,
    progress_bar,
    with_kb,
)
from ragtune.errors import RagtuneError


def init(kb: KbOpt = None, embedder: EmbedderOpt = None, as_json: JsonOpt = False) -> None:
    """Create an empty knowledge base."""
    try:
        with open_kb(kb, create=True, embedder=embedder) as base:
            stats = base.stats()
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if as_json:
        emit(stats)
    else:
        console.print(f"Knowledge base ready at [bold]{escape(stats['path'])}[/] "
                      f"(embedder {escape(stats['embedder'])}, {stats['documents']} documents)")


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and directories to ingest.")],
    kb: KbOpt = None,
    sync: Annotated[bool, typer.Option("--sync", help="Also delete documents whose files are gone.")] = False,
    chunker: Annotated[str | None, typer.Option(
        help="auto (by file type and content), recursive, token, markdown, slide, table, semantic, legal, paper, "
        "code or qa.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Chunk size in embedder tokens.")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="Overlap in tokens.")] = None,
    embedder: EmbedderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files and directories; unchanged files are skipped, changed ones replaced."""
    try:
        base = open_kb(kb, create=True, embedder=embedder, chunker=chunker, chunk_size=chunk_size,
                     chunk_overlap=chunk_overlap)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    try:
        with progress_bar(as_json) as progress:
            task = progress.add_task("ingesting", total=None)

            def update(p: Any) -> None:
                progress.update(task, completed=p.files_done, total=p.files_total,
                                description=f"ingesting {Path(p.current).name[:40]}" if p.current else "ingesting")

            report = base.ingest(paths, sync=sync, on_progress=update)
    except KeyboardInterrupt:
        base.close()
        err_console.print("[yellow]interrupted[/] — documents committed so far are kept; run the same command "
                          "again to finish")
        raise typer.Exit(130) from None
    except RagtuneError as exc:
        base.close()
        fail(str(exc), as_json)
    base.close()
    summary = report.to_dict()
    if as_json:
        emit(summary)
    else:
        console.print(
            f"added {summary['added']} · updated {summary['updated']} · unchanged {summary['unchanged']} · "
            f"duplicates {summary['duplicates']} · deleted {summary['deleted']} · failed {summary['failed']} · "
            f"skipped {summary['skipped']} — {summary['chunks']} chunks in {summary['seconds']:.1f}s"
        )
        for source, error in report.failed:
            err_console.print(f"[red]failed[/] {escape(source)}: {escape(error)}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    kb: KbOpt = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or sparse.")] = "hybrid",
    k: Annotated[int, typer.Option("-k", "--top-k", help="Number of hits.")] = 5,
    filter: Annotated[
        str | None, typer.Option("--filter", help='Metadata filter as JSON, e.g. \'{"source_type": "md"}\'.')
    ] = None,
    candidates: Annotated[int | None, typer.Option(help="Hits per retriever before fusion.")] = None,
    rewrite: RewriteOpt = None,
    rerank: RerankOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a knowledge base."""
    result = with_kb(kb, as_json, lambda base: base.retrieve(query, k, mode=mode, filter=filter,
                                                               candidates=candidates, rewrite=rewrite, rerank=rerank))
    if as_json:
        emit({"query": query, "mode": mode, "queries": result.queries, "notes": result.notes,
               "hits": [hit_json(h) for h in result.hits], "timings_ms": result.timings})
        return
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if len(result.queries) > 1:
        console.print("[dim]also searched: " + escape(" | ".join(result.queries[1:])) + "[/]", highlight=False)
    if not result.hits:
        console.print("no results")
        return
    for rank, hit in enumerate(result.hits, 1):
        where = hit.source + (f" p.{hit.meta.page_number}" if hit.meta.page_number else "")
        section = f" › {' › '.join(hit.meta.heading_path)}" if hit.meta.heading_path else ""
        console.print(f"[bold]{rank}.[/] [cyan]{escape(where)}[/]{escape(section)}  [dim]score {hit.score:.4f}[/]",
                      highlight=False)
        snippet = " ".join(hit.text.split())
        console.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}", highlight=False, markup=False)


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KbOpt = None,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    llm_adapter: Annotated[str | None, typer.Option(help="LoRA adapter directory (local backend).")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or sparse retrieval.")] = "hybrid",
    filter: Annotated[str | None, typer.Option("--filter", help="Metadata filter as JSON.")] = None,
    k: Annotated[int | None, typer.Option("-k", help="Sources given to the model.")] = None,
    answer_mode: Annotated[str | None, typer.Option(
        "--answer-mode", help="auto, generative or extractive [default: the answer_mode setting, auto].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the knowledge base with numbered, verified sources.

    In a terminal, verified sentences appear as they pass; piped, only the final answer is written.
    """
    try:
        base = open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url, llm_adapter=llm_adapter)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    answer = None
    live = console.is_terminal and not as_json
    streamed = False
    try:
        with base, console.status("searching…", spinner="dots") if live else nullcontext() as status:
            for event in base.ask_stream(question, mode=mode, filter=filter, k=k, answer_mode=answer_mode):
                if event.type == "token" and live:
                    if status is not None and not streamed:
                        status.stop()
                    # Token events carry verified text only: what is shown is never taken back.
                    console.print(event.text, end="", highlight=False, markup=False)
                    streamed = True
                elif event.type == "answer":
                    answer = event.answer
    except RagtuneError as exc:
        fail(str(exc), as_json)
    assert answer is not None
    if as_json:
        emit({
            "id": answer.id, "answer": answer.answer, "grounded": answer.grounded, "refused": answer.refused,
            "mode": answer.mode, "language": answer.language, "query": answer.query, "model": answer.model,
            "citations": [c.model_dump() for c in answer.citations],
            "sources": [hit_json(h) for h in answer.sources],
            "documents": [d.model_dump() for d in answer.documents],
            "removed_claims": [r.model_dump() for r in answer.removed_claims],
            "removed_citations": [r.model_dump() for r in answer.removed_citations],
            "timings_ms": answer.timings,
        })
        return
    if streamed:
        console.print()
    else:
        console.print(answer.answer, highlight=False, markup=False)
    _print_documents(answer)
    for removed in answer.removed_claims:
        err_console.print(f"[yellow]removed[/] {escape(removed.claim)} [dim]— {escape(removed.reason)}[/]",
                          highlight=False)


def _print_documents(answer: Any) -> None:
    """The numbered sources, one per document with its sections; a refusal lists the closest documents with
    their best snippet. Paths under the current directory are shown relative to it."""
    if not answer.documents:
        return
    console.print()
    if answer.refused:
        console.print("[dim]closest documents:[/]")
    elif answer.mode == "extractive":
        console.print("[dim]quoted from:[/]")
    for document in answer.documents:
        pages = f" p.{','.join(map(str, document.pages))}" if document.pages else ""
        label = "·" if answer.refused else f"[{document.number}]"
        mark = "" if document.cited or answer.refused else " [dim](not cited)[/]"
        console.print(f"[bold]{escape(label)}[/] [cyan]{escape(_relative(document.source) + pages)}[/]{mark}",
                      highlight=False)
        if document.sections:
            console.print(f"    [dim]{escape('; '.join(document.sections))}[/]", highlight=False)
        if answer.refused and document.snippet:
            console.print(f"    {escape(document.snippet)}", highlight=False)


def _relative(source: str) -> str:
    try:
        return Path(source).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return source
