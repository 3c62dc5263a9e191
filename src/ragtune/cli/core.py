"""The everyday commands: init, ingest, search and ask."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ragtune.cli.common import (
    AsGroupsOpt,
    EmbedderOpt,
    JsonOpt,
    KbOpt,
    LlmBaseUrlOpt,
    LlmModelOpt,
    LlmOpt,
    RerankOpt,
    RewriteOpt,
    StoreOpt,
    busy,
    cli_actor,
    console,
    emit,
    empty_kb_hint,
    err_console,
    fail,
    hit_json,
    open_kb,
    progress_bar,
)
from ragtune.errors import RagtuneError

ModeOpt = Annotated[str, typer.Option(
    help="Retrieval: hybrid (dense and BM25 fused), dense, sparse (BM25), graph (hybrid fused with a walk of the "
    "knowledge graph) or auto (the router picks).")]
FilterOpt = Annotated[str | None, typer.Option(
    "--filter", help='Metadata filter as JSON, e.g. \'{"source_type": "md"}\'. [default: none]')]


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
        "code or qa. [default: the chunker setting: auto]")] = None,
    chunk_size: Annotated[int | None, typer.Option(
        help="Chunk size in embedder tokens. [default: the chunk_size setting: 256]")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(
        help="Tokens shared by neighbouring chunks. [default: the chunk_overlap setting: 32]")] = None,
    embedder: EmbedderOpt = None,
    store: StoreOpt = None,
    ray: Annotated[bool, typer.Option("--ray", help="Parse, chunk and embed on a Ray cluster (Ray Data actors); "
                                      "the store's rules are the same.")] = False,
    ray_address: Annotated[str, typer.Option(help="With --ray: 'local' starts a cluster here, 'auto' joins a "
                                             "running one, or ray://HOST:10001.")] = "local",
    ray_workers: Annotated[int, typer.Option(help="With --ray: embedding actors (one CPU each).")] = 2,
    graph: Annotated[bool | None, typer.Option(
        "--graph", help="Also build the knowledge graph and keep it in step (the setting graph = true).")] = None,
    acl: Annotated[str | None, typer.Option(
        "--acl", help="Access groups of these documents, comma-separated (e.g. hr,legal) [default: the acl_rules "
        "setting, else kept as they are; documents without groups follow acl_default].")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files and directories; unchanged files are skipped, changed ones replaced."""
    try:
        base = open_kb(kb, create=True, embedder=embedder, chunker=chunker, chunk_size=chunk_size,
                     chunk_overlap=chunk_overlap, store=store, graph=graph)
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
                                             workers=ray_workers, sync=sync, chunker=chunker, on_progress=update,
                                             acl=acl)
            else:
                report, workers = base.ingest(paths, sync=sync, on_progress=update, acl=acl), None
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
            f"skipped {summary['skipped']} · empty {summary['empty']} — {summary['chunks']} chunks in "
            f"{summary['seconds']:.1f}s"
        )
        for source, error in report.failed:
            err_console.print(f"[red]failed[/] {escape(source)}: {escape(error)}", highlight=False)
        _name_files("empty", report.empty, "stored without text to search — is it blank, or a scan without OCR?")
        _name_files("skipped", report.skipped, "no parser for this file type — see docs/formats.md")
    if not report.ok:
        raise typer.Exit(1)


def _name_files(label: str, files: list[str], why: str, shown: int = 10) -> None:
    """Name the files of an outcome on stderr (the first ``shown``; --json lists them all)."""
    for source in files[:shown]:
        err_console.print(f"[yellow]{label}[/] {escape(source)}: {why}", highlight=False)
    if len(files) > shown:
        err_console.print(f"[yellow]{label}[/] … and {len(files) - shown} more (--json lists them all)",
                          highlight=False)


def search(
    query: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
    kb: KbOpt = None,
    mode: ModeOpt = "hybrid",
    k: Annotated[int, typer.Option("-k", "--top-k", help="Number of hits.")] = 5,
    filter: FilterOpt = None,
    candidates: Annotated[int | None, typer.Option(
        help="Hits per retriever before fusion. [default: the candidates setting: 100]")] = None,
    rewrite: RewriteOpt = None,
    rerank: RerankOpt = None,
    as_groups: AsGroupsOpt = None,
    queries: Annotated[Path | None, typer.Option(
        "--queries", help="A file of queries, one per line, searched one after another in this process (with "
        "--json: one JSON object per line). [default: none]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a knowledge base."""
    if (query is None) == (queries is None):
        fail("give a query, or --queries FILE (not both)", as_json)
    if queries is not None:
        try:
            texts = [line.strip() for line in queries.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            fail(f"{queries}: cannot read it ({exc.strerror or exc}) — check the path", as_json)
    else:
        texts = [query or ""]
    results: list[Any] = []
    try:
        with open_kb(kb) as base:
            hint = empty_kb_hint(base.stats())
            if hint is None:
                with busy("loading the embedding model…" if mode != "sparse" else "searching…", as_json):
                    results = [base.retrieve(text, k, mode=mode, filter=filter, candidates=candidates,
                                             rewrite=rewrite, rerank=rerank, groups=as_groups, actor=cli_actor())
                               for text in texts]
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if hint is not None:
        if as_json:
            emit({"query": texts[0], "mode": mode, "queries": texts[:1], "notes": [hint], "hits": [],
                  "timings_ms": {}})
        else:
            console.print("no results")
            err_console.print(f"[yellow]note:[/] {escape(hint)}", highlight=False)
        return
    for text, result in zip(texts, results, strict=True):
        _show_search(text, mode, result, as_json, batch=queries is not None)


def _show_search(query: str, mode: str, result: Any, as_json: bool, *, batch: bool) -> None:
    from ragtune.rag.answer_json import SCORE_KINDS, score_kind

    if as_json:
        data = {"query": query, **result.describe(mode),
                "hits": [hit_json(h, rank, mode) for rank, h in enumerate(result.hits, 1)],
                "timings_ms": result.timings}
        if batch:
            print(json.dumps(data, ensure_ascii=False, default=str))
        else:
            emit(data)
        return
    if batch:
        console.rule(escape(query), style="dim")
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if result.route:
        _print_route(result.route.to_dict())
    if len(result.queries) > 1:
        console.print("[dim]also searched: " + escape(" | ".join(result.queries[1:])) + "[/]", highlight=False)
    if result.dates:
        console.print("[dim]dated: " + escape(", ".join(result.dates)) + "[/]", highlight=False)
    if not result.hits:
        console.print("no results")
        return
    kinds = []
    for rank, hit in enumerate(result.hits, 1):
        where = hit.source + (f" p.{hit.meta.page_number}" if hit.meta.page_number else "")
        section = f" › {' › '.join(hit.meta.heading_path)}" if hit.meta.heading_path else ""
        kind = score_kind(hit, mode)
        kinds.append(kind)
        console.print(f"[bold]{rank}.[/] [cyan]{escape(where)}[/]{escape(section)}  [dim]{_scores(hit, kind)}[/]",
                      highlight=False)
        if hit.path:
            console.print(f"   [dim]via {escape(' → '.join(hit.path))}[/]", highlight=False)
        snippet = " ".join(hit.text.split())
        console.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}", highlight=False, markup=False)
    legend = {kind: SCORE_KINDS[kind] for kind in dict.fromkeys(kinds)}
    if mode == "hybrid":  # the fused score is shown with each retriever's own
        legend |= {kind: SCORE_KINDS[kind] for kind in ("cosine", "bm25")}
    width = max(map(len, legend))
    for n, (name, meaning) in enumerate(legend.items()):
        console.print(f"[dim]{'scores: ' if n == 0 else ' ' * 8}{name:<{width}}  {escape(meaning)}[/]",
                      highlight=False)


def _scores(hit: Any, kind: str) -> str:
    """The hit's score named by what it is, with each retriever's rank and score behind a fused one."""
    parts = []
    for name, label in (("dense", "cosine"), ("sparse", "bm25")):
        if kind in ("dbsf", "rrf", "rerank") and name in hit.scores:
            parts.append(f"{label} {hit.scores[name]:.3f} #{int(hit.scores[f'{name}_rank'])}")
    shown = f"{kind} {hit.score:.4f}"
    return shown + (f" ({', '.join(parts)})" if parts else "")


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KbOpt = None,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    llm_adapter: Annotated[str | None, typer.Option(
        help="LoRA adapter directory for the local backend (see 'ragtune train sft'). [default: none]")] = None,
    mode: ModeOpt = "hybrid",
    filter: FilterOpt = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Sources given to the model. [default: the "
                                          "context_hits setting: 3]")] = None,
    as_groups: AsGroupsOpt = None,
    schema: Annotated[Path | None, typer.Option(
        "--schema", help="Answer with JSON that this JSON Schema file validates, each field with its sources. "
        "[default: a text answer]")] = None,
    retries: Annotated[int, typer.Option(help="With --schema: times an invalid reply is sent back with its error.")]
    = 2,
    answer_mode: Annotated[str | None, typer.Option(
        "--answer-mode", help="auto (the model's answer, else a quote of the sources), generative or extractive. "
        "[default: the answer_mode setting: auto]")] = None,
    best_of: Annotated[int, typer.Option("--best-of", help="Answer N times (greedy, then sampled) and keep the one "
                                         "--reward scores highest.")] = 1,
    reward: Annotated[str | None, typer.Option("--reward", help="What chooses among --best-of answers: a reward "
                                               "model run ('ragtune train reward'), or 'checks' (the share of claims "
                                               "the cited sources support, and a length penalty). [default: none]")
                      ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the knowledge base with numbered, verified sources.

    In a terminal, verified sentences appear as they pass; piped, only the final answer is written.
    """
    from ragtune.rag.answer_json import answer_json

    if best_of < 1 or (best_of > 1) != (reward is not None):
        fail("--best-of N (N > 1) and --reward RUN go together: e.g. --best-of 4 --reward runs/reward-001 "
             "(or --reward checks)", as_json)
    try:
        base = open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url, llm_adapter=llm_adapter)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if schema is not None:
        _ask_structured(base, question, schema, retries=retries, mode=mode, filter=filter, k=k, groups=as_groups,
                        as_json=as_json)
        return
    answer = None
    chosen: Any = None
    # Token events carry verified text only, so a terminal can show them as they come and never take one back;
    # piped output gets the final answer once.
    live = console.is_terminal and not as_json
    streamed = False
    with base:
        hint = empty_kb_hint(base.stats())
        if hint is not None:
            fail(hint, as_json)
        try:
            if reward is not None:
                chosen = _best_of(base, question, reward, best_of, mode=mode, filter=filter, k=k, groups=as_groups,
                                  actor=cli_actor(), answer_mode=answer_mode)
                answer = chosen.answer
            else:
                # The first answer takes 15-25 s to load two models: say so on stderr until the first word arrives.
                with busy("loading the embedding model…", as_json) as status:
                    if mode != "sparse":
                        _ = base.embedder
                    if status is not None:
                        status.update("loading the language model…")
                    events = base.ask_stream(question, mode=mode, filter=filter, k=k, groups=as_groups,
                                             actor=cli_actor(), answer_mode=answer_mode)
                    if status is not None:
                        status.update("searching and checking the answer…")
                    first = next(events)
                for event in itertools.chain([first], events):
                    if event.type == "token" and live:
                        console.print(event.text, end="", highlight=False, markup=False)
                        streamed = True
                    elif event.type == "answer":
                        answer = event.answer
        except RagtuneError as exc:
            fail(str(exc), as_json)
    assert answer is not None
    if as_json:
        emit(answer_json(answer) | ({"best_of": {
            "n": best_of, "chosen": chosen.chosen, "timings_ms": chosen.timings,
            "candidates": [{"answer": a.answer, "score": round(sc, 4)} for a, sc in chosen.candidates]}}
            if chosen is not None else {}))
        return
    if chosen is not None:
        scores = ", ".join(f"{sc:.2f}" for _, sc in chosen.candidates)
        by = "check scores" if reward == "checks" else "reward model scores"
        err_console.print(f"best of {best_of}: answer {chosen.chosen + 1} chosen ({by} {scores}; "
                          f"{chosen.timings['total'] / 1000:.1f} s)", highlight=False)
    if streamed:
        console.print()
    else:
        console.print(answer.answer, highlight=False, markup=False)
    _print_documents(answer)
    if "route" in answer.retrieval:
        console.print()
        _print_route(answer.retrieval["route"])
    for removed in answer.removed_claims:
        err_console.print(f"[yellow]removed[/] {escape(removed.claim)} [dim]— {escape(removed.reason)}[/]",
                          highlight=False)


def _print_route(route: dict[str, Any]) -> None:
    """Mode auto's path ("route: hybrid → graph (…)") and whether the router advises refusing."""
    advice = " · [yellow]advises refusing[/]" if route["refuse"] else ""
    console.print(f"[dim]route: {escape(' → '.join(route['steps']))} ({escape(route['reason'])})[/]{advice}",
                  highlight=False)


def _ask_structured(base: Any, question: str, schema_path: Path, *, retries: int, mode: str, filter: str | None,
                    k: int | None, groups: str | None, as_json: bool) -> None:
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        base.close()
        fail(f"{schema_path}: not a readable JSON Schema ({exc}) — give a JSON file", as_json)
    try:
        with base:
            answer = base.ask_structured(question, schema, groups=groups, actor=cli_actor(), retries=retries,
                                         mode=mode, filter=filter, k=k)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    payload = {"data": answer.data, "refused": answer.refused, "field_sources": answer.field_sources,
               "attempts": answer.attempts, "strategy": answer.strategy, "errors": answer.errors,
               "sources": [hit_json(h, rank, mode) for rank, h in enumerate(answer.sources, 1)]}
    if as_json:
        emit(payload)
        return
    if answer.refused:
        console.print("not found: no source in the knowledge base matches this question")
        return
    console.print_json(json.dumps(answer.data, ensure_ascii=False))
    for number, hit in enumerate(answer.sources, 1):
        fields = [p for p, numbers in answer.field_sources.items() if number in numbers]
        console.print(f"[bold][{number}][/] [cyan]{escape(hit.source)}[/] [dim]{escape(', '.join(fields))}[/]",
                      highlight=False)


def _print_documents(answer: Any) -> None:
    """The numbered sources, one per document with its sections; a refusal lists the closest documents with
    their closest passage. Paths under the current directory are shown relative to it."""
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


def _best_of(base: Any, question: str, reward: str, n: int, **options: Any) -> Any:
    from ragtune.train.best_of import CHECKS, best_of_n, checks
    from ragtune.train.reward import RewardModel

    scorer = checks() if reward == CHECKS and not Path(reward).exists() else RewardModel(Path(reward))
    with console.status(f"answering {n} times…"):
        return best_of_n(base, question, scorer, n=n, **options)
