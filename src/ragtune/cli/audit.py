"""The ``ragtune audit`` command: who searched, asked or exported what, and which documents they were shown."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import JsonOpt, KbOpt, console, emit, fail, with_kb
from ragtune.guard.audit import ACTIONS, parse_time


def audit(
    kb: KbOpt = None,
    since: Annotated[str | None, typer.Option(
        help="Only entries from this date or time on (e.g. 2026-12-01). (optional)")] = None,
    until: Annotated[str | None, typer.Option(help="Only entries before this date or time. (optional)")] = None,
    actor: Annotated[str | None, typer.Option(
        help="Only this actor (e.g. key:1a2b3c4d, cli:alice). (optional)")] = None,
    action: Annotated[str | None, typer.Option(help=f"Only this action: {', '.join(ACTIONS)}. (optional)")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the newest N entries. [default: all]")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain instead of listing.")] = False,
    purge: Annotated[bool, typer.Option("--purge", help="Remove entries older than audit_retention_days.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The knowledge base's audit log: every search, answer, export and access change, append-only."""
    if action is not None and action not in ACTIONS:
        fail(f"unknown action {action!r} — one of {', '.join(ACTIONS)}", as_json)

    def run(base: Any) -> Any:
        log = base.audit_log()
        if verify:
            return log.verify()
        if purge:
            return {"purged": log.purge(), "retention_days": log.retention_days}
        return [e.to_dict() for e in log.entries(since=parse_time(since), until=parse_time(until), actor=actor,
                                                 action=action, limit=limit)]

    result = with_kb(kb, as_json, run)
    if as_json:
        emit(result)
    elif verify:
        if result["ok"]:
            console.print(f"[green]ok[/] — {result['entries']} entries, hash chain intact")
        else:
            console.print(f"[red]broken[/] at entry {result['broken_at']}: {escape(result['problem'])}")
    elif purge:
        console.print(f"purged {result['purged']} entries older than {result['retention_days']} days")
    else:
        table = Table("time", "actor", "action", "question", "groups", "retrieved", "shown", "refused")
        for e in result:
            refused = "" if e["refused"] is None else ("yes" if e["refused"] else "no")
            groups = "(all)" if e["groups"] is None else ",".join(e["groups"])
            table.add_row(*(escape(str(v)) for v in (e["time"], e["actor"], e["action"], e["question"][:60], groups,
                                                      len(e["retrieved"]), ", ".join(e["shown"][:5]), refused)))
        console.print(table)
    if verify and not result["ok"]:
        raise typer.Exit(1)
