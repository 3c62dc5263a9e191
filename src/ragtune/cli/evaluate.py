"""The ``ragtune eval`` commands: measure retrieval quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragtune.cli.common import EmbedderOpt, JsonOpt, KbOpt, console, emit, fail, progress_bar
from ragtune.errors import RagtuneError
from ragtune.settings import parse_overrides

app = typer.Typer(help="Measure retrieval quality.", no_args_is_help=True)


@app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[str, typer.Argument(help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/), or the "
                                           "name of one fetched by 'ragtune data beir'.")],
    kb: KbOpt = None,
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    mode: Annotated[list[str] | None, typer.Option(
        help="Retrieval mode to measure: hybrid, dense or sparse (repeatable). [default: hybrid]")] = None,
    rewrite: Annotated[
        list[str] | None,
        typer.Option(help="Also measure each mode with this rewrite: hyde, multi, stepback (repeatable). "
                     "[default: none]"),
    ] = None,
    rerank: Annotated[
        list[str] | None, typer.Option(help="Also measure each mode with this reranker, e.g. cross-encoder:PATH or llm "
                                            "(repeatable). [default: none]")
    ] = None,
    candidates: Annotated[int | None, typer.Option(
        help="First-stage hits the reranker reorders. [default: the rerank_candidates setting: 50]")] = None,
    llm_model: Annotated[str | None, typer.Option(
        help="LLM for rewrites and the llm reranker. [default: the llm_model setting]")] = None,
    embedder: EmbedderOpt = None,
    chunk_size: Annotated[int | None, typer.Option(
        help="Chunk size when building the KB. [default: the chunk_size setting: 256]")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N queries. [default: all]")] = None,
    queries_from: Annotated[Path | None, typer.Option(
        "--query-ids", help="File with one query id per line. [default: every query of the split]")] = None,
    save: Annotated[Path | None, typer.Option(help="Also write the JSON result here. (optional)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a setting, e.g. --set rerank_fusion=0.5 (repeatable). "
                                   "[default: none]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """nDCG@10, Recall@10/100 and MRR@10 of retrieval on a BEIR data set (the KB is built once and reused)."""
    from ragtune.evaluate.beir import resolve_beir
    from ragtune.evaluate.retrieval import evaluate_beir

    modes = mode or ["hybrid"]
    try:
        beir_dir = resolve_beir(dataset)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    kb_path = kb if kb is not None else beir_dir.with_name(beir_dir.name + "_kb")
    try:
        with progress_bar(as_json) as progress:
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
        fail(str(exc), as_json)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(result, indent=2))
    if as_json:
        emit(result)
        return
    table = Table("mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms",
                  title=f"{result['dataset']} ({split}, {result['queries']} queries)")
    for name, row in result["modes"].items():
        m = row["metrics"]
        table.add_row(name, f"{m['ndcg_cut_10']:.4f}", f"{m['recall_10']:.4f}", f"{m['recall_100']:.4f}",
                      f"{m['recip_rank_10']:.4f}", f"{row['latency_ms']['p50']:.1f}", f"{row['latency_ms']['p95']:.1f}")
    console.print(table)
