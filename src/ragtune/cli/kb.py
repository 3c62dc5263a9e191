"""The ``ragtune kb`` commands: inspect, verify, delete from, re-embed and adapt a knowledge base; access groups and
flagged chunks."""

from __future__ import annotations

from pathlib import Path
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
    cli_actor,
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
    """List documents with their status, chunk count, error, access groups, chunks flagged as injection attempts
    and personal data found (with pii = "flag")."""
    def rows_of(base: Any) -> list[dict[str, Any]]:
        return [
            {"id": d.id, "source": d.uri, "type": d.source_type, "chunks": d.chunk_count, "status": d.status,
             "error": d.error, "duplicate_of": d.duplicate_of, "version": d.version,
             "groups": base.document_groups(d), "own_groups": d.metadata.get("acl") is not None,
             "flagged_chunks": d.metadata.get("injection_flagged", 0), "pii": d.metadata.get("pii", [])}
            for d in base.documents()
        ]

    rows = with_kb(kb, as_json, rows_of)
    if as_json:
        emit(rows)
        return
    # Groups and flags get columns only when some document has them: a plain KB keeps the narrow table.
    trust = any(r["own_groups"] or r["flagged_chunks"] or r["pii"] for r in rows)
    table = Table("id", "source", "type", "chunks", "status", *(("groups", "flagged") if trust else ()), "error")
    for r in rows:
        status = r["status"] + (f" of {r['duplicate_of']}" if r["duplicate_of"] else "")
        if r["status"] == "ok" and not r["chunks"]:
            status = "ok (empty)"
        groups = ",".join(r["groups"]) + ("" if r["own_groups"] else " (default)")
        flagged = str(r["flagged_chunks"] or "") + (f" pii: {','.join(r['pii'])}" if r["pii"] else "")
        cells = [r["id"], r["source"], r["type"] or "", r["chunks"], status, *((groups, flagged) if trust else ()),
                 r["error"] or ""]
        table.add_row(*(escape(str(v)) for v in cells))
    console.print(table)


DocArg = Annotated[str, typer.Argument(help="A document: its id (see 'ragtune kb docs') or its file's path.")]


@app.command("rm")
def kb_rm(
    documents: Annotated[list[str], typer.Argument(
        help="Documents to delete: ids (see 'ragtune kb docs') or the paths of their files.")],
    kb: KbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Delete documents and their chunks (the files themselves are left alone)."""

    def delete(base: Any) -> dict[str, str | None]:
        found = {ref: find_document(base, ref) for ref in documents}
        return {ref: record.id if record is not None and base.delete(record.id) else None
                for ref, record in found.items()}

    results = with_kb(kb, as_json, delete)
    missing = [ref for ref, doc_id in results.items() if doc_id is None]
    if as_json:
        emit({"deleted": [doc_id for doc_id in results.values() if doc_id], "not_found": missing})
    else:
        for ref, doc_id in results.items():
            console.print(f"deleted {escape(doc_id)}" + (f" ({escape(ref)})" if ref != doc_id else "") if doc_id
                          else f"[yellow]no document {escape(ref)}[/] — see 'ragtune kb docs'", highlight=False)
    if missing:
        raise typer.Exit(1)


@app.command("show")
def kb_show(
    document: DocArg,
    kb: KbOpt = None,
    width: Annotated[int, typer.Option(help="Characters of each chunk shown (0 = all).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """A document's chunks as stored, with their metadata: how a file was split."""

    def load(base: Any) -> tuple[Any, list[Any]]:
        record = find_document(base, document)
        if record is None:
            fail(f"no document {document!r} in {base.path} — see 'ragtune kb docs' for ids and paths", as_json)
        return record, base.store.document_chunks(record.id)

    record, chunks = with_kb(kb, as_json, load)
    if as_json:
        emit({"document": {"id": record.id, "source": record.uri, "type": record.source_type,
                           "status": record.status, "error": record.error, "duplicate_of": record.duplicate_of,
                           "chunks": record.chunk_count, "version": record.version, "size": record.size,
                           "title": record.title, "metadata": record.metadata},
              "chunks": [{"chunk_id": h.chunk_id, "index": h.meta.chunk_index, "chars": len(h.text), "text": h.text,
                          "metadata": _set_fields(h.meta)} for h in chunks]})
        return
    facts = [record.source_type or "?", f"{record.chunk_count} chunks", record.status]
    if record.metadata.get("chunker"):
        facts.append(f"chunker {record.metadata['chunker']}")
    facts += [f"version {record.version}", f"id {record.id}"]
    console.print(f"[bold]{escape(record.uri)}[/]  [dim]{escape(' · '.join(facts))}[/]", highlight=False)
    if record.error:
        err_console.print(f"[red]error[/] {escape(record.error)}", highlight=False)
    if record.duplicate_of:
        console.print(f"duplicate of {escape(record.duplicate_of)}: its chunks are stored once, under that document")
    elif not chunks and record.status == "ok":
        console.print("no chunks: the file has no text to search (blank, or a scan without OCR)")
    for hit in chunks:
        meta = _set_fields(hit.meta)
        path, section = meta.pop("heading_path", []), meta.pop("section_title", "")
        where = " › ".join(path) or section
        details = [f"{len(hit.text)} chars"] + [f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}"
                                                for k, v in meta.items() if k != "chunk_index"]
        console.rule(f"chunk {hit.meta.chunk_index + 1}/{len(chunks)}" + (f" · {where}" if where else ""),
                     style="dim", align="left")
        console.print(f"[dim]{escape(' · '.join(details))}[/]", highlight=False)
        text = hit.text if not width or len(hit.text) <= width else hit.text[:width] + "…"
        console.print(text, highlight=False, markup=False)


def find_document(base: Any, ref: str) -> Any:
    """The document ``ref`` names: an id, the path of its file, or its URI as 'ragtune kb docs' lists it."""
    from ragtune.ingest import document_id, file_uri

    for doc_id in (ref, document_id(file_uri(Path(ref))), document_id(ref)):
        record = base.store.document(doc_id)
        if record is not None:
            return record
    return None


def _set_fields(meta: Any) -> dict[str, Any]:
    """The chunk metadata that says something: fields set to other than their defaults (not the repeated source)."""
    return meta.model_dump(exclude_defaults=True, exclude={"source", "source_type", "document_id"}) | {
        "chunk_index": meta.chunk_index}


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


@app.command("acl")
def kb_acl(
    document: DocArg,
    kb: KbOpt = None,
    set_groups: Annotated[str | None, typer.Option(
        "--set", help="New access groups, comma-separated (e.g. hr,legal; '*' = everyone). [default: show "
        "them]")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Drop the document's own groups: acl_default applies.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or change a document's access groups (takes effect at once; recorded in the audit log)."""
    if set_groups is not None and clear:
        fail("give --set or --clear, not both", as_json)

    def act(base: Any) -> dict[str, Any] | None:
        record = find_document(base, document)
        if record is None:
            return None
        if set_groups is not None or clear:
            base.set_acl(record.id, None if clear else set_groups, actor=cli_actor())
            record = base.store.document(record.id)
        return {"id": record.id, "source": record.uri, "groups": base.document_groups(record),
                "own_groups": record.metadata.get("acl")}

    result = with_kb(kb, as_json, act)
    if result is None:
        fail(f"no document {document!r} — see 'ragtune kb docs' for ids and paths", as_json)
    if as_json:
        emit(result)
        return
    origin = "" if result["own_groups"] is not None else " (acl_default)"
    console.print(f"{escape(result['source'])}: {escape(', '.join(result['groups']))}{origin}", highlight=False)


@app.command("flagged")
def kb_flagged(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """List the chunks the injection scanner flagged at ingest, with the reason."""
    def flagged(base: Any) -> list[dict[str, Any]]:
        ids = base.store.allowed_ids({"injection": {"$exists": True}}) or set()
        hits = base.store.get(sorted(ids))
        return [{"chunk_id": h.chunk_id, "document_id": h.document_id, "source": h.source,
                 "reason": h.meta.injection, "text": h.text} for h in hits.values()]

    rows = with_kb(kb, as_json, flagged)
    if as_json:
        emit(rows)
        return
    if not rows:
        console.print("no flagged chunks")
        return
    for r in rows:
        snippet = " ".join(r["text"].split())[:160]
        console.print(f"[bold]{escape(r['chunk_id'])}[/] [cyan]{escape(r['source'])}[/] [yellow]{escape(r['reason'])}"
                      f"[/]\n   {escape(snippet)}", highlight=False)
