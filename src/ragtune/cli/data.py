"""The ``ragtune data`` commands: training data from a knowledge base (synthetic queries, negatives, feedback)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ragtune.cli.common import (
    JsonOpt,
    KbOpt,
    LlmBaseUrlOpt,
    LlmModelOpt,
    LlmOpt,
    console,
    emit,
    fail,
    kb_path,
    open_kb,
    progress_bar,
)
from ragtune.errors import RagtuneError

app = typer.Typer(help="Build training data: synthetic queries, mined and generated hard negatives.",
                  no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--out", help="JSONL file to write.")]
LlmBatchOpt = Annotated[
    int, typer.Option(help="Prompts the LLM writes together (batched on the local model; replies cached per batch).")
]
PairsOpt = Annotated[
    Path, typer.Option("--pairs", help='JSONL of {"query", "positive"} (or "chunk_id"/"document_id") pairs.')
]


def _written(out: Path, rows: Any, summary: dict[str, Any], as_json: bool, message: str) -> None:
    """Write the rows as JSONL and report: the summary (plus ``out``) as JSON, or ``message`` filled from it."""
    from ragtune.jsonl import write_jsonl

    write_jsonl(out, rows)
    summary = {**summary, "out": str(out)}
    if as_json:
        emit(summary)
        return
    console.print(message.format(**{**summary, "out": escape(str(out))}), highlight=False)


@app.command("synth-queries")
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
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """LLM-written questions for the KB's chunks, de-duplicated and kept only if retrieval finds their chunk."""
    from ragtune.train.synthetic import synth_queries

    try:
        with open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url) as base, \
                progress_bar(as_json) as progress:
            task = progress.add_task("writing questions", total=None)
            queries, report = synth_queries(
                base, per_chunk=per_chunk, top_k=top_k, mode=mode, limit=limit, sample=sample, seed=seed,
                batch_size=batch_size,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except RagtuneError as exc:
        fail(str(exc), as_json)
    _written(out, queries, report.to_dict(), as_json,
             "{kept} questions for {chunks} chunks written to {out} ({generated} generated, {duplicates} duplicates "
             "or echoes, {not_found} dropped by the round trip)")


@app.command("feedback-pairs")
def data_feedback_pairs(out: OutOpt, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Training pairs from answers users rated 👍: the question and each source the answer cited.

    Feed them to 'ragtune data mine-negatives --pairs' and 'ragtune train embedder' like any other pairs."""
    from ragtune.feedback import feedback_pairs

    try:
        pairs = feedback_pairs(kb_path(kb))
    except RagtuneError as exc:
        fail(str(exc), as_json)
    _written(out, pairs, {"pairs": len(pairs), "answers": len({p["query_id"] for p in pairs})}, as_json,
             "{pairs} pairs from {answers} 👍 answers written to {out}")


@app.command("mine-negatives")
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
        fail(f"--rank-window {rank_window!r}: write it as FIRST:LAST, e.g. 3:50", as_json)
    try:
        loaded = read_pairs(pairs)
        with open_kb(kb) as base, progress_bar(as_json) as progress:
            task = progress.add_task("mining hard negatives", total=len(loaded))
            triplets = mine_hard_negatives(
                base, loaded, n_negatives=negatives, rank_window=(int(first), int(last)),
                margin=margin if margin else None, mode=mode,
                on_progress=lambda done, total: progress.update(task, completed=done),
            )
    except RagtuneError as exc:
        fail(str(exc), as_json)
    summary = {"pairs": len(loaded), "triplets": len(triplets), "negatives": sum(len(t.negatives) for t in triplets),
               "dropped_by_margin": sum(t.dropped_by_margin for t in triplets)}
    _written(out, triplets, summary, as_json, "{triplets} triplets ({negatives} negatives, {dropped_by_margin} "
             "candidates dropped by the margin) from {pairs} pairs written to {out}")


@app.command("gen-negatives")
def data_gen_negatives(
    pairs: PairsOpt,
    out: OutOpt,
    kb: KbOpt = None,
    per_query: Annotated[int, typer.Option(help="Generated negatives per query.")] = 1,
    batch_size: LlmBatchOpt = 16,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """LLM-written "plausible but wrong" passages (same topic, wrong key detail), as triplets tagged 'generated'.

    The KB supplies the LLM settings and the reply cache; pairs need their positive as text."""
    from ragtune.train.negatives import generate_negatives, read_pairs

    try:
        loaded = read_pairs(pairs)
        with open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url) as base, \
                progress_bar(as_json) as progress:
            task = progress.add_task("writing negatives", total=len(loaded))
            triplets = generate_negatives(base.llm_client(), loaded, per_query=per_query, batch_size=batch_size,
                                          on_progress=lambda done, total: progress.update(task, completed=done))
    except RagtuneError as exc:
        fail(str(exc), as_json)
    summary = {"pairs": len(loaded), "triplets": len(triplets), "negatives": sum(len(t.negatives) for t in triplets)}
    _written(out, triplets, summary, as_json,
             "{negatives} generated negatives for {triplets} of {pairs} queries written to {out}")


@app.command("beir")
def data_beir(
    dataset: Annotated[str, typer.Argument(help="A BEIR dataset name (scifact, nfcorpus, fiqa, ...) or folder.")],
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where datasets are kept [default: $RAGTUNE_DATA_CACHE/beir or "
                                  "~/.cache/ragtune/beir].")
    ] = None,
    split: Annotated[str, typer.Option(help="qrels split to summarise.")] = "test",
    as_json: JsonOpt = False,
) -> None:
    """Download a BEIR dataset once (or check a local folder) for 'ragtune eval retrieval NAME'; prints its folder."""
    from ragtune.evaluate.beir import load_beir, resolve_beir

    try:
        with progress_bar(as_json) as progress:
            task = progress.add_task(f"downloading {escape(dataset)}", total=None)
            folder = resolve_beir(dataset, download=True, cache_dir=cache_dir,
                                  on_progress=lambda done, total: progress.update(task, completed=done,
                                                                                  total=total or None))
        loaded = load_beir(folder, split)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    summary = {"dataset": dataset, "path": str(folder), "split": split, "corpus": len(loaded.corpus),
               "queries": len(loaded.queries), "judgements": sum(len(j) for j in loaded.qrels.values())}
    if as_json:
        emit(summary)
        return
    console.print(f"{escape(dataset)}: {summary['corpus']} documents, {summary['queries']} {split} queries "
                  f"({summary['judgements']} judgements) in {escape(str(folder))}", highlight=False)
    console.print(f"evaluate: ragtune eval retrieval {escape(dataset)} --split {split}", highlight=False)



@app.command("eval-set")
def data_eval_set(
    out: OutOpt,
    kb: KbOpt = None,
    size: Annotated[int, typer.Option(help="Rows in the set (questions, probes and rated answers together).")] = 200,
    unanswerable: Annotated[float, typer.Option(help="Share of unanswerable probes (questions about names or "
                                                "terms the KB does not contain).")] = 0.15,
    from_feedback: Annotated[bool, typer.Option("--from-feedback", help="Also use the KB's 👍 answers and "
                                                "corrections as references (first).")] = False,
    top_k: Annotated[int, typer.Option(help="Round trip: keep a question only if its chunk is in the top k.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed of the chunks sampled and the probes.")] = 0,
    batch_size: LlmBatchOpt = 16,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    llm_base_url: LlmBaseUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A frozen eval set for the KB (content hash in OUT's .meta.json): questions with short references and gold
    chunk ids, unanswerable probes, and optionally the KB's rated answers. Score it with 'ragtune eval rag'."""
    from ragtune.evaluate.evalset import build_eval_set, write_eval_set

    try:
        with open_kb(kb, llm=llm, llm_model=llm_model, llm_base_url=llm_base_url) as base, \
                progress_bar(as_json) as progress:
            task = progress.add_task("writing questions", total=None)

            def update(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total)

            rows, report = build_eval_set(base, size=size, unanswerable=unanswerable, from_feedback=from_feedback,
                                          seed=seed, top_k=top_k, batch_size=batch_size, on_progress=update)
            meta = write_eval_set(rows, out, report=report, kb=base)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    summary = {**report.to_dict(), "out": str(out), "sha256": meta["sha256"]}
    if as_json:
        emit(summary)
        return
    console.print(f"{report.rows} rows written to {escape(str(out))} (sha256 {meta['sha256'][:12]}…): "
                  f"{report.synthetic} synthetic ({report.references_from_llm} references written by the LLM, "
                  f"{report.references_extracted} quoted from the chunk), {report.unanswerable} unanswerable, "
                  f"{report.from_feedback} from feedback", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
