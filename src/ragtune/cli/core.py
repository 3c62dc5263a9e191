"""The everyday commands: init, ingest, search and ask."""

from __future__ import annotations

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
    StoreOpt,
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


def init(kb: KbOpt = None, embedder: EmbedderOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Create an empty knowledge base."""
    try:
        with open_kb(kb, create=True, embedder=embedder, store=store) as base:
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
    store: StoreOpt = None,
    ray: Annotated[bool, typer.Option("--ray", help="Parse, chunk and embed on a Ray cluster (Ray Data actors); "
                                      "the store's rules are the same.")] = False,
    ray_address: Annotated[str, typer.Option(help="With --ray: 'local' starts a cluster here, 'auto' joins a "
                                             "running one, or ray://HOST:10001.")] = "local",
    ray_workers: Annotated[int, typer.Option(help="With --ray: embedding actors (one CPU each).")] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files and directories; unchanged files are skipped, changed ones replaced."""
    try:
        base = open_kb(kb, create=True, embedder=embedder, chunker=chunker, chunk_size=chunk_size,
                     chunk_overlap=chunk_overlap, store=store)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    try:
        with progress_bar(as_json) as progress:
            task = progress.add_task("ingesting", total=None)

            def update(p: Any) -> None:
                progress.update(task, completed=p.files_done, total=p.files_total,
                                description=f"ingesting {Path(p.current).name[:40]}" if p.current else "ingesting")

            if ray:
                from ragtune.ingest_ray import ray_ingest

                report, workers = ray_ingest(base.store, base.settings, paths, address=ray_address,
                                             workers=ray_workers, sync=sync, chunker=chunker, on_progress=update)
            else:
                report, workers = base.ingest(paths, sync=sync, on_progress=update), None
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
    if workers is not None:
        summary["workers"] = workers
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
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the knowledge base with numbered, verified sources."""
    try:
        base = open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url, llm_adapter=llm_adapter)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    answer = None
    try:
        with base:
            for event in base.ask_stream(question, mode=mode, filter=filter, k=k):
                if event.type == "token" and not as_json:
                    console.print(event.text, end="", highlight=False, markup=False)
                elif event.type == "answer":
                    answer = event.answer
    except RagtuneError as exc:
        fail(str(exc), as_json)
    assert answer is not None
    if as_json:
        emit({
            "id": answer.id, "answer": answer.answer, "grounded": answer.grounded, "refused": answer.refused,
            "language": answer.language, "query": answer.query, "model": answer.model,
            "citations": [c.model_dump() for c in answer.citations],
            "sources": [hit_json(h) for h in answer.sources],
            "removed_citations": [r.model_dump() for r in answer.removed_citations],
            "timings_ms": answer.timings,
        })
        return
    console.print()
    # The streamed text is the model's raw output; show the verified answer when verification changed it.
    console.rule("answer" if answer.grounded else "not found", style="dim")
    console.print(answer.answer, highlight=False, markup=False)
    cited = {c.number for c in answer.citations}
    for number, hit in enumerate(answer.sources, 1):
        where = hit.source + (f" p.{hit.meta.page_number}" if hit.meta.page_number else "")
        mark = "" if number in cited or answer.refused else " [dim](not cited)[/]"
        label = f"[{number}]" if not answer.refused else "·"
        console.print(f"[bold]{escape(label)}[/] [cyan]{escape(where)}[/]{mark}", highlight=False)
    for removed in answer.removed_citations:
        err_console.print(f"[yellow]removed citation {escape(f'[{removed.number}]')}[/]: {escape(removed.reason)}",
                          highlight=False)
