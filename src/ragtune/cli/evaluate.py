"""The ``ragtune eval`` commands: measure retrieval quality and answer quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ragtune.cli.common import (
    EmbedderOpt,
    JsonOpt,
    KbOpt,
    LlmBaseUrlOpt,
    LlmModelOpt,
    LlmOpt,
    console,
    emit,
    fail,
    open_kb,
    progress_bar,
)
from ragtune.errors import RagtuneError
from ragtune.settings import parse_overrides

app = typer.Typer(help="Measure retrieval and answer quality.", no_args_is_help=True)


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


@app.command("rag")
def eval_rag(
    data: Annotated[Path | None, typer.Option(help="JSONL (or JSON) rows with RAGAS's field names to score: "
                                              "user_input, retrieved_contexts, response, reference, ... "
                                              "(optional)")] = None,
    questions: Annotated[Path | None, typer.Option(help="JSONL questions (an eval set) the KB answers with its own "
                                                   "pipeline before scoring; needs --kb. (optional)")] = None,
    kb: KbOpt = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="faithfulness, answer_relevancy, context_precision, context_recall (also @K), "
        "answer_correctness, semantic_similarity, citation_precision, citation_recall, refusal_accuracy, "
        "false_refusal_rate, exact_match, rouge_score (repeatable). [default: those the rows have inputs for]")] = None,
    judge: Annotated[str, typer.Option(help="Claim judge: 'default' (no LLM), or an LLM backend: openai, local, "
                                       "llamacpp.")] = "default",
    judge_model: Annotated[str | None, typer.Option(
        help="The judge's model (served name, directory or .gguf). (optional)")]
    = None,
    judge_base_url: Annotated[str | None, typer.Option(
        help="The judge's OpenAI-compatible server URL. (optional)")] = None,
    embedder: EmbedderOpt = None,
    by: Annotated[str | None, typer.Option(help="Also report the metrics per value of this row field "
                                           "(e.g. type). (optional)")] = None,
    compare: Annotated[Path | None, typer.Option(help="A previous --json result: paired difference per metric "
                                                 "with a bootstrap 95% CI. (optional)")] = None,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report here. (optional)")] = None,
    save: Annotated[Path | None, typer.Option(
        help="Also write the JSON result here (for a later --compare). (optional)")]
    = None,
    cache: Annotated[Path | None, typer.Option(help="Where answers and judge replies are cached so a run resumes "
                                               "[default: KB/cache/eval, else ~/.cache/ragtune/eval]")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Answer and judge everything afresh.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows. [default: all]")] = None,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score RAG answers with RAGAS's metrics, deterministically and without NaN: given answers (--data), or the
    answers the knowledge base gives to --questions."""
    from ragtune.evaluate import evaluate_rag

    if (data is None) == (questions is None):
        fail("give --data (rows with responses to score) or --questions with --kb (the KB answers them)", as_json)
    try:
        with progress_bar(as_json) as progress:
            task = progress.add_task("loading", total=None)

            def update(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total)

            base = None
            if questions is not None or kb is not None:
                base = open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url)
            try:
                result = evaluate_rag(
                    data, kb=base, questions=questions, metrics=metric, judge=judge, judge_model=judge_model,
                    judge_base_url=judge_base_url, embedder=embedder, by=by, compare=compare, report=report,
                    cache=False if no_cache else cache, limit=limit, on_progress=update,
                )
            finally:
                if base is not None:
                    base.close()
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(result, ensure_ascii=False, indent=2))
    if as_json:
        emit(result)
        return
    _print_rag(result, report)


def _print_rag(result: dict[str, Any], report: Path | None) -> None:
    config = result["config"]
    table = Table("metric", "mean", "rows counted", title=f"RAG evaluation ({config['rows']} rows, judge "
                  f"{config['judge']})")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}", str(result["counts"][name]))
    console.print(table)
    for field, groups in (result.get("groups") or {}).items():
        names = list(result["metrics"])
        by_group = Table(field, *names, title=f"by {field}")
        for group, values in groups.items():
            by_group.add_row(group, *(f"{values['metrics'][m]:.3f}" if m in values["metrics"] else "—" for m in names))
        console.print(by_group)
    comparison = result.get("comparison")
    if comparison:
        diff = Table("metric", "baseline", "current", "difference", "95% CI", "n", title="compared with the baseline")
        for name, row in comparison["metrics"].items():
            mark = " *" if row["significant"] else ""
            diff.add_row(name, f"{row['baseline']:.4f}", f"{row['current']:.4f}", f"{row['difference']:+.4f}{mark}",
                         f"[{row['low']:+.4f}, {row['high']:+.4f}]", str(row["n"]))
        console.print(diff)
        for warning in comparison["warnings"]:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if report is not None:
        console.print(f"report written to {report}", highlight=False)
