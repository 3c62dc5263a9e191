"""The ``ragtune feedback`` commands: the 👍/👎 feedback users gave answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragtune.cli.common import JsonOpt, KbOpt, console, emit, fail, kb_path
from ragtune.errors import RagtuneError

app = typer.Typer(help="Export the feedback users gave answers.", no_args_is_help=True)


@app.command("export")
def feedback_export(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    kb: KbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the 👍/👎 feedback of a knowledge base as JSONL (question, answer, rating, corrections, contexts)."""
    from ragtune.feedback import export_feedback

    try:
        count = export_feedback(kb_path(kb), out)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if as_json:
        emit({"exported": count, "path": str(out)})
    else:
        console.print(f"exported {count} feedback records to {escape(str(out))}")
