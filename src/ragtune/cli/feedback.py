"""The ``ragtune feedback`` commands: the 👍/👎 feedback users gave answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import AsGroupsOpt, JsonOpt, KbOpt, cli_actor, console, emit, fail, kb_path, with_kb
from ragtune.errors import RagtuneError

app = typer.Typer(help="See and export the feedback users gave answers.", no_args_is_help=True)


@app.command("list")
def feedback_list(
    kb: KbOpt = None,
    rating: Annotated[str | None, typer.Option(help="Only 'up' or 'down' ratings. [default: both]")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N (0 = all).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The feedback users gave answers, newest first: rating, question, answer, correction and comment."""
    from ragtune.feedback import FeedbackStore

    if rating not in (None, "up", "down"):
        fail(f"--rating {rating!r}: choose 'up' or 'down'", as_json)
    try:
        with FeedbackStore(kb_path(kb)) as store:
            records = [r for r in store.records() if rating in (None, r.rating)][::-1]
            counts = store.counts()
    except RagtuneError as exc:
        fail(str(exc), as_json)
    shown = records[:limit] if limit > 0 else records
    if as_json:
        emit([r.to_json() for r in shown])
        return
    if not records:
        console.print("no feedback yet — ratings come from the 👍/👎 of the web page and POST /v1/feedback")
        return
    table = Table("when", "rating", "question", "answer", "correction / comment",
                  title=f"{counts['up']} 👍 · {counts['down']} 👎 in {escape(str(kb_path(kb)))}")
    for r in shown:
        note = " / ".join(x for x in (r.corrected_answer, r.comment) if x)
        table.add_row(r.created_at.replace("T", " ")[:16], "👍 up" if r.rating == "up" else "👎 down",
                      escape(_short(r.question)), escape(_short(r.answer)), escape(_short(note)))
    console.print(table)
    if len(records) > len(shown):
        console.print(f"[dim]{len(records) - len(shown)} older not shown (--limit 0 shows all; 'ragtune feedback "
                      "export' writes them as JSONL)[/]")


def _short(text: str, chars: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"


@app.command("export")
def feedback_export(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    kb: KbOpt = None,
    as_groups: AsGroupsOpt = None,
    keep_pii: Annotated[bool, typer.Option(
        "--keep-pii", help="Export personal data as it is. [default: replaced by [EMAIL], [PHONE], ...]")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write the 👍/👎 feedback of a knowledge base as JSONL (question, answer, rating, corrections, contexts),
    personal data redacted; with --as-groups only answers whose sources those groups may read."""
    count = with_kb(kb, as_json, lambda base: base.export_feedback(out, groups=as_groups, actor=cli_actor(),
                                                                   redact=not keep_pii))
    if as_json:
        emit({"exported": count, "path": str(out)})
    else:
        console.print(f"exported {count} feedback records to {escape(str(out))}")
