"""The ``ragtune feedback`` commands: the 👍/👎 feedback users gave answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragtune.cli.common import AsGroupsOpt, JsonOpt, KbOpt, cli_actor, console, emit, with_kb

app = typer.Typer(help="Export the feedback users gave answers.", no_args_is_help=True)


@app.command("export")
def feedback_export(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    kb: KbOpt = None,
    as_groups: AsGroupsOpt = None,
    keep_pii: Annotated[bool, typer.Option(
        "--keep-pii", help="Export personal data as it is (default: replaced by [EMAIL], [PHONE], ...).")] = False,
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
