"""The ``ragtune keys`` commands: the server's API keys, kept where ``ragtune serve`` reads them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import JsonOpt, console, emit, err_console, fail
from ragtune.cli.serve import KbRootOpt, ServerDbOpt, resolve_server_db
from ragtune.errors import ConfigError, RagtuneError

app = typer.Typer(help="Create, list and revoke the server's API keys.", no_args_is_help=True)

ALL_KBS = "*"
ServerKbOpt = Annotated[Path | None, typer.Option(
    "--kb", help="A knowledge base folder the server serves: its keys are in the folder that holds it (as for "
    "'ragtune serve --kb'). (optional)")]


@app.command("create")
def keys_create(
    kb: Annotated[str, typer.Option(
        "--kb", help="The knowledge base folder the key is for, as given to 'ragtune serve --kb' (with --kb-root, "
        "its name in the root); '*' with --kb-root: every knowledge base.")],
    role: Annotated[str, typer.Option("--role", help="reader, writer or admin.")] = "reader",
    name: Annotated[str, typer.Option("--name", help="A note saying who the key is for. [default: none]")] = "",
    groups: Annotated[str | None, typer.Option(
        "--groups", help="Access groups, comma-separated: the key sees only documents of these groups. [default: "
        "every document of its knowledge base]")] = None,
    kb_root: KbRootOpt = None,
    server_db: ServerDbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the key itself is shown only now."""
    from ragtune.server.keys import KeyStore
    from ragtune.store.factory import POINTER_FILE
    from ragtune.store.local import DB_FILE
    from ragtune.store.postgres import redact

    try:
        kb_name, folder = _key_scope(kb, kb_root, server_db)
        db = resolve_server_db(kb_root, [folder] if folder is not None else [], server_db)
        store = KeyStore(db)
        try:
            secret, record = store.create(kb_name, role, name, groups=groups)
        finally:
            store.close()
    except RagtuneError as exc:
        fail(str(exc), as_json)
    missing = folder is not None and not (folder / DB_FILE).exists() and not (folder / POINTER_FILE).exists()
    if as_json:
        emit({"key": secret, "id": record.id, "kb": record.kb, "role": record.role, "groups": record.groups,
              "server_db": redact(str(db)), "kb_exists": not missing})
        return
    scope = "every knowledge base" if record.kb == ALL_KBS else escape(record.kb)
    if record.groups is not None:
        scope += f", groups {escape(','.join(record.groups))}"
    console.print(f"key {record.id} ({record.role} on {scope}), stored in {escape(redact(str(db)))} — store the key "
                  "now, it is not shown again:", highlight=False)
    print(secret)
    if missing:
        err_console.print(f"[yellow]note:[/] there is no knowledge base at {escape(str(folder))} yet; the key works "
                          "once it is created", highlight=False)


@app.command("list")
def keys_list(
    kb_root: KbRootOpt = None, kb: ServerKbOpt = None, server_db: ServerDbOpt = None, as_json: JsonOpt = False
) -> None:
    """List API keys (never the keys themselves)."""
    from ragtune.server.keys import KeyStore

    store = KeyStore(_existing_db(kb_root, kb, server_db, as_json))
    keys = store.list()
    store.close()
    if as_json:
        emit([{"id": k.id, "kb": k.kb, "role": k.role, "name": k.name, "groups": k.groups,
                "created_at": k.created_at, "revoked": k.revoked_at is not None} for k in keys])
        return
    if not keys:
        console.print("no keys yet — create one with 'ragtune keys create --kb PATH --role reader'")
        return
    table = Table("id", "kb", "role", "groups", "name", "revoked")
    for k in keys:
        groups = ",".join(k.groups) if k.groups is not None else "(all)"
        table.add_row(k.id, escape(k.kb), k.role, escape(groups), escape(k.name), "yes" if k.revoked_at else "")
    console.print(table)


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from 'ragtune keys list').")],
    kb_root: KbRootOpt = None, kb: ServerKbOpt = None, server_db: ServerDbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Revoke an API key."""
    from ragtune.server.keys import KeyStore

    store = KeyStore(_existing_db(kb_root, kb, server_db, as_json))
    revoked = store.revoke(key_id)
    store.close()
    if not revoked:
        fail(f"no live key with id {key_id!r} — see 'ragtune keys list'", as_json)
    if as_json:
        emit({"id": key_id, "revoked": True})
    else:
        console.print(f"revoked key {escape(key_id)}")


def _key_scope(kb: str, kb_root: Path | None, server_db: str | None) -> tuple[str, Path | None]:
    """The knowledge base name a key is for, and its folder (None for every KB)."""
    from ragtune.server.knowledge_bases import NAME_PATTERN

    if kb == ALL_KBS:
        if kb_root is None and server_db is None:
            raise ConfigError("a key for every knowledge base ('--kb *') needs the server it is for: pass --kb-root "
                              "ROOT (or --server-db FILE) as given to 'ragtune serve'")
        return ALL_KBS, None
    path = Path(kb).expanduser()
    if kb_root is not None:
        root = kb_root.expanduser().resolve()
        # With a root, a bare name is a knowledge base in it (one the API may create later).
        folder = root / kb if len(path.parts) == 1 and not path.is_absolute() else path.resolve()
        if folder.parent != root:
            raise ConfigError(f"--kb {kb}: {folder} is not a knowledge base of --kb-root {root} — give its name in "
                              "the root, or leave out --kb-root")
    else:
        folder = path.resolve()
    if not re.fullmatch(NAME_PATTERN, folder.name):
        raise ConfigError(f"--kb {kb}: the server names a knowledge base after its folder, and {folder.name!r} is "
                          "not a valid name (up to 64 letters, digits, '_', '-' or '.')")
    return folder.name, folder


def _existing_db(kb_root: Path | None, kb: Path | None, server_db: str | None, as_json: bool) -> Path | str:
    """The server database named by the options; an error, never a new empty file, when it does not exist
    (a Postgres URL is a database that exists)."""
    try:
        db = resolve_server_db(kb_root, [kb] if kb is not None else [], server_db)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if isinstance(db, Path) and not db.is_file():
        fail(f"no server database at {db} — check --kb-root / --kb / --server-db (the same as given to 'ragtune "
             "serve'), or create a key first with 'ragtune keys create'", as_json)
    return db
