"""The ragtune command line: init, ingest, search, kb, eval."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ragtune.errors import RagtuneError
from ragtune.settings import default_kb_path, parse_overrides

T = TypeVar("T")

app = typer.Typer(help="ragtune: private-knowledge RAG and fine-tuning, offline.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
kb_app = typer.Typer(help="Inspect and manage a knowledge base.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure retrieval quality.", no_args_is_help=True)
train_app = typer.Typer(help="Train models: LLMs (SFT, DPO, KTO, ORPO), rerankers, embedders.", no_args_is_help=True)
model_app = typer.Typer(help="Merge and evaluate trained models.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(model_app, name="model")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

KbOpt = Annotated[
    Path | None, typer.Option("--kb", help="Knowledge base directory [default: $RAGTUNE_KB or ./ragtune_kb]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
EmbedderOpt = Annotated[str | None, typer.Option("--embedder", help="Embedding model (name, directory or hub id).")]
RewriteOpt = Annotated[
    str | None, typer.Option("--rewrite", help="Rewrite the query first with the LLM: hyde, multi, stepback or none.")
]
RerankOpt = Annotated[
    str | None,
    typer.Option("--rerank", help="Rerank with 'cross-encoder:PATH' (see 'ragtune train reranker'), 'llm' or 'none'."),
]


def _kb_path(kb: Path | None) -> Path:
    return kb if kb is not None else default_kb_path()


def _fail(message: str, as_json: bool, code: int = 1) -> NoReturn:
    if as_json:
        print(json.dumps({"error": message}, ensure_ascii=False))
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _emit(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _open(kb: Path | None, *, create: bool = False, **overrides: Any) -> Any:
    from ragtune.kb import KnowledgeBase

    return KnowledgeBase.open(_kb_path(kb), create=create, **overrides)


def _with_kb(kb: Path | None, as_json: bool, action: Callable[[Any], T]) -> T:
    """Open the knowledge base, run ``action`` on it, close it; a RagtuneError becomes a clean exit 1."""
    try:
        with _open(kb) as base:
            return action(base)
    except RagtuneError as exc:
        _fail(str(exc), as_json)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        # bitsandbytes warns on import that an optional 4-bit CPU kernel package is missing; nothing ragtune
        # runs outside QLoRA needs it, and it would open every `ask`.
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


@app.command()
def init(kb: KbOpt = None, embedder: EmbedderOpt = None, as_json: JsonOpt = False) -> None:
    """Create an empty knowledge base."""
    try:
        with _open(kb, create=True, embedder=embedder) as base:
            stats = base.stats()
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    if as_json:
        _emit(stats)
    else:
        console.print(f"Knowledge base ready at [bold]{escape(stats['path'])}[/] "
                      f"(embedder {escape(stats['embedder'])}, {stats['documents']} documents)")


@app.command()
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
        base = _open(kb, create=True, embedder=embedder, chunker=chunker, chunk_size=chunk_size,
                     chunk_overlap=chunk_overlap)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    try:
        with _progress(as_json) as progress:
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
        _fail(str(exc), as_json)
    base.close()
    summary = report.to_dict()
    if as_json:
        _emit(summary)
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


def _progress(disabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=err_console, disable=disabled or not err_console.is_terminal,
        transient=False,
    )


@app.command()
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
    result = _with_kb(kb, as_json, lambda base: base.retrieve(query, k, mode=mode, filter=filter,
                                                               candidates=candidates, rewrite=rewrite, rerank=rerank))
    if as_json:
        _emit({"query": query, "mode": mode, "queries": result.queries, "notes": result.notes,
               "hits": [_hit_json(h) for h in result.hits], "timings_ms": result.timings})
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


def _hit_json(hit: Any) -> dict[str, Any]:
    return {
        "chunk_id": hit.chunk_id, "document_id": hit.document_id, "source": hit.source, "score": hit.score,
        "scores": hit.scores, "text": hit.text, "metadata": hit.meta.model_dump(),
    }


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KbOpt = None,
    llm: Annotated[str | None, typer.Option("--llm", help="local, openai or llamacpp.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name, directory or .gguf path.")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    llm_adapter: Annotated[str | None, typer.Option(help="LoRA adapter directory (local backend).")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or sparse retrieval.")] = "hybrid",
    filter: Annotated[str | None, typer.Option("--filter", help="Metadata filter as JSON.")] = None,
    k: Annotated[int | None, typer.Option("-k", help="Sources given to the model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the knowledge base with numbered, verified sources."""
    try:
        base = _open(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url, llm_adapter=llm_adapter)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    answer = None
    try:
        with base:
            for event in base.ask_stream(question, mode=mode, filter=filter, k=k):
                if event.type == "token" and not as_json:
                    console.print(event.text, end="", highlight=False, markup=False)
                elif event.type == "answer":
                    answer = event.answer
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    assert answer is not None
    if as_json:
        _emit({
            "id": answer.id, "answer": answer.answer, "grounded": answer.grounded, "refused": answer.refused,
            "language": answer.language, "query": answer.query, "model": answer.model,
            "citations": [c.model_dump() for c in answer.citations],
            "sources": [_hit_json(h) for h in answer.sources],
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


@kb_app.command("stats")
def kb_stats(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Counts of documents, chunks and failures, and the embedder."""
    stats = _with_kb(kb, as_json, lambda base: base.stats())
    if as_json:
        _emit(stats)
        return
    table = Table(show_header=False)
    for key, value in stats.items():
        table.add_row(key, escape(str(value)))
    console.print(table)


@kb_app.command("docs")
def kb_docs(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """List documents with their status, chunk count and error."""
    docs = _with_kb(kb, as_json, lambda base: base.documents())
    rows = [
        {"id": d.id, "source": d.uri, "type": d.source_type, "chunks": d.chunk_count, "status": d.status,
         "error": d.error, "duplicate_of": d.duplicate_of, "version": d.version}
        for d in docs
    ]
    if as_json:
        _emit(rows)
        return
    table = Table("id", "source", "type", "chunks", "status", "error")
    for r in rows:
        status = r["status"] + (f" of {r['duplicate_of']}" if r["duplicate_of"] else "")
        table.add_row(*(escape(str(v)) for v in (r["id"], r["source"], r["type"] or "", r["chunks"], status,
                                                  r["error"] or "")))
    console.print(table)


@kb_app.command("rm")
def kb_rm(
    document_ids: Annotated[list[str], typer.Argument(help="Document ids (see 'ragtune kb docs').")],
    kb: KbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Delete documents and their chunks."""
    results = _with_kb(kb, as_json, lambda base: {doc_id: base.delete(doc_id) for doc_id in document_ids})
    missing = [d for d, ok in results.items() if not ok]
    if as_json:
        _emit({"deleted": [d for d, ok in results.items() if ok], "not_found": missing})
    else:
        for doc_id, ok in results.items():
            console.print(f"deleted {escape(doc_id)}" if ok
                          else f"[yellow]no document {escape(doc_id)}[/] — see 'ragtune kb docs'")
    if missing:
        raise typer.Exit(1)


@kb_app.command("verify")
def kb_verify(
    kb: KbOpt = None,
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild the indexes from the database if needed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check that the catalog, chunks and indexes agree."""
    report = _with_kb(kb, as_json, lambda base: base.verify(repair=repair))
    if as_json:
        _emit(report)
    elif report["ok"]:
        console.print(f"[green]ok[/] — {report['documents']} documents, {report['chunks']} chunks, indexes in sync")
    else:
        for problem in report["problems"]:
            err_console.print(f"[red]problem[/] {escape(problem)}", highlight=False)
        err_console.print("run 'ragtune kb verify --repair' to rebuild the indexes from the database")
    if not report["ok"]:
        raise typer.Exit(1)


@eval_app.command("retrieval")
def eval_retrieval(
    beir_dir: Annotated[Path, typer.Argument(help="BEIR-layout directory (corpus.jsonl, queries.jsonl, qrels/).")],
    kb: KbOpt = None,
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    mode: Annotated[list[str] | None, typer.Option(help="hybrid, dense, sparse (repeatable).")] = None,
    rewrite: Annotated[
        list[str] | None,
        typer.Option(help="Also measure each mode with this rewrite: hyde, multi, stepback (repeatable)."),
    ] = None,
    rerank: Annotated[
        list[str] | None, typer.Option(help="Also measure each mode with this reranker, e.g. cross-encoder:PATH or llm "
                                            "(repeatable).")
    ] = None,
    candidates: Annotated[int | None, typer.Option(help="First-stage hits the reranker reorders.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="LLM for rewrites and the llm reranker.")] = None,
    embedder: EmbedderOpt = None,
    chunk_size: Annotated[int | None, typer.Option(help="Chunk size when building the KB.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N queries.")] = None,
    queries_from: Annotated[Path | None, typer.Option("--query-ids", help="File with one query id per line.")] = None,
    save: Annotated[Path | None, typer.Option(help="Also write the JSON result here.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a setting, e.g. --set rerank_fusion=0.5 (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 of retrieval on a BEIR data set (the KB is built once and reused)."""
    from ragtune.evaluate.retrieval import evaluate_beir

    modes = mode or ["hybrid"]
    kb_path = kb if kb is not None else beir_dir.with_name(beir_dir.name + "_kb")
    try:
        with _progress(as_json) as progress:
            task = progress.add_task("preparing", total=None)

            def update(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total)

            ids = queries_from.read_text().split() if queries_from else None
            extra = {k: v for k, v in (("rerank_candidates", candidates), ("llm_model", llm_model)) if v is not None}
            extra.update(parse_overrides(set_))
            result = evaluate_beir(beir_dir, kb_path, split=split, modes=modes, rewrites=rewrite or (),
                                   reranks=rerank or (), embedder=embedder, chunk_size=chunk_size, limit=limit,
                                   query_ids=ids, on_progress=update, **extra)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(result, indent=2))
    if as_json:
        _emit(result)
        return
    table = Table("mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms",
                  title=f"{result['dataset']} ({split}, {result['queries']} queries)")
    for name, row in result["modes"].items():
        m = row["metrics"]
        table.add_row(name, f"{m['ndcg_cut_10']:.4f}", f"{m['recall_10']:.4f}", f"{m['recall_100']:.4f}",
                      f"{m['recip_rank_10']:.4f}", f"{row['latency_ms']['p50']:.1f}", f"{row['latency_ms']['p95']:.1f}")
    console.print(table)


@train_app.command("reranker")
def train_reranker_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for the trained cross-encoder.")],
    kb: KbOpt = None,
    beir: Annotated[
        Path | None, typer.Option(help="Train on a BEIR data set's qrels (the KB is built from its corpus if empty).")
    ] = None,
    split: Annotated[str, typer.Option(help="BEIR qrels split to train on.")] = "train",
    heldout: Annotated[float, typer.Option(help="Share of BEIR queries held out for evaluation (ids saved).")] = 0.2,
    dev: Annotated[float, typer.Option(help="Share of queries used for early stopping.")] = 0.1,
    pairs: Annotated[
        Path | None, typer.Option(help='JSONL of {"query", "positive"} (or "chunk_id"/"document_id") pairs.')
    ] = None,
    base_model: Annotated[str | None, typer.Option(help="Encoder to start from [default: bundled MiniLM].")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs.")] = None,
    negatives: Annotated[int | None, typer.Option(help="Hard negatives per query.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Pairs per training step.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a cross-encoder reranker on retriever-mined hard negatives; use it with --rerank cross-encoder:OUT."""
    from ragtune.train.negatives import mine_hard_negatives, read_pairs, write_jsonl
    from ragtune.train.reranker import RerankerRecipe, beir_pairs, dev_samples, train_reranker

    if (beir is None) == (pairs is None):
        _fail("give exactly one source of training data: --beir DIR or --pairs FILE", as_json)
    given = {"base_model": base_model, "epochs": epochs, "negatives": negatives, "batch_size": batch_size,
             "learning_rate": learning_rate}
    try:
        recipe = RerankerRecipe.model_validate({k: v for k, v in given.items() if v is not None})
    except ValueError as exc:  # pydantic's ValidationError names the field and the rule
        _fail(f"invalid reranker setting: {exc}", as_json)
    try:
        with _open(kb, create=beir is not None) as base, _progress(as_json) as progress:
            if beir is not None:
                from ragtune.evaluate.beir import load_beir, split_query_ids
                from ragtune.evaluate.retrieval import corpus_documents

                dataset = load_beir(beir, split)
                name = beir.resolve().name
                task = progress.add_task("indexing corpus", total=len(dataset.corpus))
                base.ingest_documents(corpus_documents(dataset, name), total=len(dataset.corpus),
                                      on_progress=lambda p: progress.update(task, completed=p.files_done))
                train_ids, dev_ids, heldout_ids = split_query_ids(sorted(dataset.queries), heldout=heldout, dev=dev)
                out.mkdir(parents=True, exist_ok=True)
                (out / "heldout_queries.txt").write_text("\n".join(heldout_ids) + "\n")
                train_pairs, dev_pairs = beir_pairs(dataset, name, train_ids), beir_pairs(dataset, name, dev_ids)
            else:
                assert pairs is not None
                all_pairs = read_pairs(pairs)
                cut = int(len(all_pairs) * (1 - dev))
                train_pairs, dev_pairs = all_pairs[:cut], all_pairs[cut:]
            task = progress.add_task("mining hard negatives", total=len(train_pairs))
            triplets = mine_hard_negatives(base, train_pairs, n_negatives=recipe.negatives,
                                           on_progress=lambda done, total: progress.update(task, completed=done))
            write_jsonl(out / "triplets.jsonl", triplets)
            samples = dev_samples(base, dev_pairs)
        # Trainer logs go to stderr, so that stdout holds only the result (JSON with --json).
        with contextlib.redirect_stdout(sys.stderr):
            run = train_reranker(triplets, out, recipe, dev=samples)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — run the same command again to resume from the last checkpoint in {out}")
        raise typer.Exit(130) from None
    if as_json:
        _emit(run)
        return
    console.print(f"trained on {run['triplets']} queries ({run['pairs']} pairs) in {run['train_seconds']:.0f} s; "
                  f"dev nDCG@10 {run['dev_before'].get('dev_ndcg@10', float('nan')):.4f} → "
                  f"{run['dev_after'].get('dev_ndcg@10', float('nan')):.4f}")
    console.print(f"use it: ragtune search QUERY --rerank cross-encoder:{out}", highlight=False, markup=False)


# Command groups that live in their own modules register themselves on the apps above.
from ragtune import cli_data, cli_serve, cli_train  # noqa: E402,F401


def main() -> None:
    try:
        app()
    except RagtuneError as exc:  # a last resort; commands report their own errors
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
