"""``ragtune serve``: the OpenAI-compatible HTTP API and the web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragtune.cli.common import StoreOpt, console, fail
from ragtune.errors import RagtuneError

KbRootOpt = Annotated[Path | None, typer.Option("--kb-root", help="Folder of knowledge bases (one per subfolder).")]
ServerDbOpt = Annotated[
    str | None, typer.Option("--server-db", help="Keys and jobs database: a SQLite file or a postgresql:// URL "
                             "[default: the Postgres store's database, else KB_ROOT/ragtune_server.db, or "
                             "./ragtune_server.db with --kb].")
]


def resolve_server_db(kb_root: Path | None, server_db: str | None) -> Path | str:
    from ragtune.server import server_db_path
    from ragtune.settings import load_settings

    if server_db is not None:
        return server_db if "://" in server_db else Path(server_db)
    return server_db_path(load_settings(), kb_root.resolve() if kb_root else None)


def serve(
    kb: Annotated[list[Path] | None, typer.Option("--kb", help="Knowledge base folder to serve (repeatable).")] = None,
    kb_root: KbRootOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8080].")] = None,
    server_db: ServerDbOpt = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No API keys: everyone is admin (loopback only).")] = False,
    cors: Annotated[list[str] | None, typer.Option("--cors", help="Allowed browser origin (repeatable).")] = None,
    store: StoreOpt = None,
) -> None:
    """Serve knowledge bases over an OpenAI-compatible HTTP API with a web page at /."""
    import uvicorn

    from ragtune.server import create_app, server_db_path
    from ragtune.settings import load_settings
    from ragtune.store.postgres import redact

    try:
        settings = load_settings(store=store)
        overrides = {"cors_origins": cors} if cors else {}
        settings = settings.model_copy(update=overrides)
        host = host or settings.server_host
        port = port or settings.server_port
        if no_auth and host not in ("127.0.0.1", "localhost", "::1"):
            fail("--no-auth serves without keys; it is only allowed on 127.0.0.1", False)
        db = resolve_server_db(kb_root, server_db) if server_db is not None else \
            server_db_path(settings, kb_root.resolve() if kb_root else None)
        application = create_app(kb_root=kb_root, kbs=kb or [], settings=settings, auth=not no_auth, server_db=db)
    except RagtuneError as exc:
        fail(str(exc), False)
    console.print(f"ragtune serving on [bold]http://{host}:{port}/[/] (keys and jobs in {escape(redact(str(db)))})")
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
