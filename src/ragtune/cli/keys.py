"""The ``ragtune keys`` commands: the server's API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import JsonOpt, console, emit, fail
from ragtune.cli.serve import KbRootOpt, ServerDbOpt, resolve_server_db
from ragtune.errors import RagtuneError

app = typer.Typer(help="Create, list and revoke the server's API keys.", no_args_is_help=True)


@app.command("create")
def keys_create(
    kb: Annotated[str, typer.Option("--kb", help="Knowledge base name the key is for ('*': all).")],
    role: Annotated[str, typer.Option("--role", help="reader, writer or admin.")] = "reader",
    name: Annotated[str, typer.Option("--name", help="A note saying who the key is for.")] = "",
    kb_root: KbRootOpt = None,
    server_db: ServerDbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the key itself is shown only now."""
    from ragtune.server.keys import KeyStore

    try:
        store = KeyStore(resolve_server_db(kb_root, server_db))
        secret, record = store.create(kb, role, name)
        store.close()
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if as_json:
        emit({"key": secret, "id": record.id, "kb": record.kb, "role": record.role})
        return
    console.print(f"key {record.id} ({record.role} on {escape(record.kb)}) — store it now, it is not shown again:")
    print(secret)


@app.command("list")
def keys_list(kb_root: KbRootOpt = None, server_db: ServerDbOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (never the keys themselves)."""
    from ragtune.server.keys import KeyStore

    store = KeyStore(resolve_server_db(kb_root, server_db))
    keys = store.list()
    store.close()
    if as_json:
        emit([{"id": k.id, "kb": k.kb, "role": k.role, "name": k.name, "created_at": k.created_at,
                "revoked": k.revoked_at is not None} for k in keys])
        return
    table = Table("id", "kb", "role", "name", "revoked")
    for k in keys:
        table.add_row(k.id, k.kb, k.role, k.name, "yes" if k.revoked_at else "")
    console.print(table)


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from 'ragtune keys list').")],
    kb_root: KbRootOpt = None, server_db: ServerDbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Revoke an API key."""
    from ragtune.server.keys import KeyStore

    store = KeyStore(resolve_server_db(kb_root, server_db))
    revoked = store.revoke(key_id)
    store.close()
    if not revoked:
        fail(f"no live key with id {key_id!r} — see 'ragtune keys list'", as_json)
    if as_json:
        emit({"id": key_id, "revoked": True})
    else:
        console.print(f"revoked key {escape(key_id)}")
