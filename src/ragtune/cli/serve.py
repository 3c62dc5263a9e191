"""``ragtune serve``: the OpenAI-compatible HTTP API and the web page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragtune.cli.common import StoreOpt, console, fail
from ragtune.errors import RagtuneError

#: Seconds an idle HTTP connection is kept open (uvicorn's default is 5: see the call below).
KEEP_ALIVE_S = 75

KbRootOpt = Annotated[Path | None, typer.Option(
    "--kb-root", help="Folder of knowledge bases, one per subfolder (created and deleted through the API). "
    "(optional)")]
ServerDbOpt = Annotated[str | None, typer.Option(
    "--server-db", help="The server's API keys and jobs: a SQLite file or a postgresql:// URL. [default: the "
    "server_db setting: ragtune_server.db in --kb-root, or in the folder that holds the --kb folders; with a "
    "Postgres store, its database]")]


def resolve_server_db(kb_root: Path | None, kbs: Sequence[Path], server_db: str | None, store: str | None = None
                      ) -> Path | str:
    """The server database a command means: --server-db, else where 'ragtune serve' with the same --kb-root or
    --kb (and --store) puts it (see ``ragtune.server.server_db_path``)."""
    from ragtune.server import server_db_path
    from ragtune.settings import load_settings

    if server_db is not None:
        return server_db if "://" in server_db else Path(server_db).expanduser().resolve()
    return server_db_path(load_settings(store=store), kb_root, kbs)


def serve(
    kb: Annotated[list[Path] | None, typer.Option(
        "--kb", help="Knowledge base folder to serve, named after the folder (repeatable). (optional)")] = None,
    kb_root: KbRootOpt = None,
    host: Annotated[str | None, typer.Option(
        help="Address to listen on. [default: the server_host setting: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on. [default: the server_port setting: 8080]")
                    ] = None,
    server_db: ServerDbOpt = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No API keys: everyone is admin (loopback only).")] = False,
    cors: Annotated[list[str] | None, typer.Option(
        "--cors", help="A browser origin allowed to call the API (repeatable). [default: the cors_origins setting: "
        "none]")] = None,
    store: StoreOpt = None,
) -> None:
    """Serve knowledge bases over an OpenAI-compatible HTTP API with a web page at /."""
    import uvicorn

    from ragtune.server import create_app
    from ragtune.settings import load_settings
    from ragtune.store.postgres import redact

    if not kb and kb_root is None:
        fail("the server needs knowledge bases — pass --kb PATH (repeatable) or --kb-root FOLDER", False)
    try:
        settings = load_settings(store=store)
        overrides = {"cors_origins": cors} if cors else {}
        settings = settings.model_copy(update=overrides)
        host = host or settings.server_host
        port = port or settings.server_port
        if no_auth and host not in ("127.0.0.1", "localhost", "::1"):
            fail("--no-auth serves without keys; it is only allowed on 127.0.0.1", False)
        db = resolve_server_db(kb_root, kb or [], server_db, store)
        application = create_app(kb_root=kb_root, kbs=kb or [], settings=settings, auth=not no_auth, server_db=db)
    except RagtuneError as exc:
        fail(str(exc), False)
    console.print(f"ragtune serving on [bold]http://{host}:{port}/[/] (keys and jobs in {escape(redact(str(db)))})")
    # Idle connections stay open longer than clients keep them for reuse (httpx and the openai SDK: 5 s, uvicorn's
    # own default too): at equal times a client may send on a connection the server is closing, and gets a reset.
    uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=10,
                timeout_keep_alive=KEEP_ALIVE_S)
