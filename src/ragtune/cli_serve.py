"""The ``ragtune serve``, ``ragtune keys`` and ``ragtune feedback`` commands (registered on the main app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli import JsonOpt, _emit, _fail, app, console
from ragtune.errors import RagtuneError

keys_app = typer.Typer(help="Create, list and revoke the server's API keys.", no_args_is_help=True)
feedback_app = typer.Typer(help="Export the feedback users gave answers.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(feedback_app, name="feedback")

KbRootOpt = Annotated[Path | None, typer.Option("--kb-root", help="Folder of knowledge bases (one per subfolder).")]
ServerDbOpt = Annotated[
    Path | None, typer.Option("--server-db", help="Keys and jobs database [default: KB_ROOT/ragtune_server.db, or "
                              "./ragtune_server.db with --kb].")
]


def _server_db(kb_root: Path | None, server_db: Path | None) -> Path:
    from ragtune.server import server_db_path
    from ragtune.settings import load_settings

    if server_db is not None:
        return server_db
    return server_db_path(load_settings(), kb_root.resolve() if kb_root else None)


@app.command()
def serve(
    kb: Annotated[list[Path] | None, typer.Option("--kb", help="Knowledge base folder to serve (repeatable).")] = None,
    kb_root: KbRootOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8080].")] = None,
    server_db: ServerDbOpt = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No API keys: everyone is admin (loopback only).")] = False,
    cors: Annotated[list[str] | None, typer.Option("--cors", help="Allowed browser origin (repeatable).")] = None,
) -> None:
    """Serve knowledge bases over an OpenAI-compatible HTTP API with a web page at /."""
    import uvicorn

    from ragtune.server import create_app
    from ragtune.settings import load_settings

    try:
        settings = load_settings()
        overrides = {"cors_origins": cors} if cors else {}
        settings = settings.model_copy(update=overrides)
        host = host or settings.server_host
        port = port or settings.server_port
        if no_auth and host not in ("127.0.0.1", "localhost", "::1"):
            _fail("--no-auth serves without keys; it is only allowed on 127.0.0.1", False)
        db = _server_db(kb_root, server_db)
        application = create_app(kb_root=kb_root, kbs=kb or [], settings=settings, auth=not no_auth, server_db=db)
    except RagtuneError as exc:
        _fail(str(exc), False)
    console.print(f"ragtune serving on [bold]http://{host}:{port}/[/] (keys and jobs in {escape(str(db))})")
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


@keys_app.command("create")
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
        store = KeyStore(_server_db(kb_root, server_db))
        secret, record = store.create(kb, role, name)
        store.close()
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    if as_json:
        _emit({"key": secret, "id": record.id, "kb": record.kb, "role": record.role})
        return
    console.print(f"key {record.id} ({record.role} on {escape(record.kb)}) — store it now, it is not shown again:")
    print(secret)


@keys_app.command("list")
def keys_list(kb_root: KbRootOpt = None, server_db: ServerDbOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (never the keys themselves)."""
    from ragtune.server.keys import KeyStore

    store = KeyStore(_server_db(kb_root, server_db))
    keys = store.list()
    store.close()
    if as_json:
        _emit([{"id": k.id, "kb": k.kb, "role": k.role, "name": k.name, "created_at": k.created_at,
                "revoked": k.revoked_at is not None} for k in keys])
        return
    table = Table("id", "kb", "role", "name", "revoked")
    for k in keys:
        table.add_row(k.id, k.kb, k.role, k.name, "yes" if k.revoked_at else "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from 'ragtune keys list').")],
    kb_root: KbRootOpt = None, server_db: ServerDbOpt = None, as_json: JsonOpt = False,
) -> None:
    """Revoke an API key."""
    from ragtune.server.keys import KeyStore

    store = KeyStore(_server_db(kb_root, server_db))
    revoked = store.revoke(key_id)
    store.close()
    if not revoked:
        _fail(f"no live key with id {key_id!r} — see 'ragtune keys list'", as_json)
    if as_json:
        _emit({"id": key_id, "revoked": True})
    else:
        console.print(f"revoked key {escape(key_id)}")


@feedback_app.command("export")
def feedback_export(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    kb: Annotated[Path | None, typer.Option("--kb", help="Knowledge base folder.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the 👍/👎 feedback of a knowledge base as JSONL (question, answer, rating, corrections, contexts)."""
    from ragtune.feedback import export_feedback
    from ragtune.settings import default_kb_path

    try:
        count = export_feedback(kb or default_kb_path(), out)
    except RagtuneError as exc:
        _fail(str(exc), as_json)
    if as_json:
        _emit({"exported": count, "path": str(out)})
    else:
        console.print(f"exported {count} feedback records to {escape(str(out))}")
