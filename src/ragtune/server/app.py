"""The FastAPI application: OpenAI-compatible RAG API, knowledge-base management, health, metrics and the web page."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune import __version__
from ragtune.embed import Embedder
from ragtune.errors import ConfigError
from ragtune.ingest import IngestReport
from ragtune.llm.base import LLM
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.server import kb_api, loop_api, openai_api
from ragtune.server.auth import Authenticator, RateLimiter
from ragtune.server.errors import ApiError, error_response
from ragtune.server.jobs import Job, JobQueue
from ragtune.server.keys import KeyStore
from ragtune.server.knowledge_bases import KnowledgeBases
from ragtune.server.metrics import CONTENT_TYPE_LATEST, Metrics
from ragtune.server.state import ServerState
from ragtune.settings import Settings, load_settings
from ragtune.store.postgres import is_postgres_url, open_database

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def server_db_path(settings: Settings, kb_root: Path | None = None, kbs: Sequence[str | Path] = ()) -> Path | str:
    """Where a server keeps its API keys and jobs: the ``server_db`` setting when it is a Postgres URL or an
    absolute path, else that file in the folder that holds the knowledge bases — ``kb_root``, or the one folder the
    ``kbs`` folders sit in. With a Postgres ``store`` and no ``server_db`` set, the store's database, so every
    server on the store shares keys and jobs.

    ``ragtune serve`` and ``ragtune keys`` both resolve it here, so a key made for a server is where that server
    reads it; nothing is ever put in the working directory by default.
    """
    if is_postgres_url(settings.server_db):
        return settings.server_db
    if "server_db" not in settings.model_fields_set and is_postgres_url(settings.store):
        return settings.store
    path = Path(settings.server_db).expanduser()
    if path.is_absolute():
        return path
    if kb_root is not None:
        return Path(kb_root).resolve() / path
    homes = {Path(kb).resolve().parent for kb in kbs}
    if len(homes) == 1:
        return homes.pop() / path
    if not homes:
        raise ConfigError("no knowledge base given to find the server's keys and jobs — pass --kb-root ROOT or --kb "
                          "PATH as given to 'ragtune serve', or --server-db FILE")
    raise ConfigError(f"the knowledge bases are in different folders ({', '.join(sorted(map(str, homes)))}), so "
                      "there is no one place for the server's keys and jobs — pass --server-db FILE (the same to "
                      "'ragtune keys'), or set server_db to an absolute path")


def create_app(
    *, kb_root: str | Path | None = None, kbs: Sequence[str | Path] = (), settings: Settings | None = None,
    embedder: Embedder | None = None, llm: LLM | None = None, auth: bool = True,
    server_db: str | Path | None = None, kb_overrides: dict[str, Any] | None = None,
) -> FastAPI:
    """Build the server app.

    ``kb_root`` is a folder of knowledge bases (created and deleted through the API); ``kbs`` are fixed
    knowledge-base folders (named after the folder). ``embedder``/``llm`` replace those the settings name (tests,
    embedding the server in another process). ``auth=False`` serves without API keys: every caller is an admin.
    """
    settings = settings or load_settings()
    root = Path(kb_root).resolve() if kb_root is not None else None
    if root is None and not kbs:
        raise ConfigError("the server needs knowledge bases — pass --kb PATH (repeatable) or --kb-root FOLDER")
    where = server_db if server_db is not None else server_db_path(settings, root, kbs)
    database = open_database(where if is_postgres_url(str(where)) else Path(where))
    metrics = Metrics()
    registry = KnowledgeBases(root=root, paths=[Path(p) for p in kbs], settings=settings, embedder=embedder,
                              llm=llm, overrides=kb_overrides)
    keys = KeyStore(database) if auth else None
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)

    def finished(job: Job, report: IngestReport | None) -> None:
        metrics.ingest_jobs.labels(job.kb, job.status).inc()
        if report is not None:
            for outcome in ("added", "updated", "unchanged", "duplicates", "skipped", "empty"):
                metrics.ingest_files.labels(job.kb, outcome).inc(len(getattr(report, outcome)))
            metrics.ingest_files.labels(job.kb, "failed").inc(len(report.failed))
            metrics.ingest_chunks.labels(job.kb).inc(report.chunks)
        metrics.jobs_pending.set(jobs.pending())

    jobs = JobQueue(database, registry.get, finished)
    # Loop runs take long: a queue (and worker) of their own, on the same jobs table.
    loop_jobs = JobQueue(database, registry.get, runners={"loop": loop_api.loop_runner(registry)})
    state = ServerState(settings=settings, kbs=registry, jobs=jobs, keys=keys,
                        auth=Authenticator(keys, limiter, metrics.rate_limited.inc), metrics=metrics, llm=llm,
                        model_id=llm.name if llm is not None else settings.llm_model or BUNDLED_SMOLLM2,
                        loop_jobs=loop_jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        loop_jobs.start()
        metrics.jobs_pending.set(jobs.pending())
        try:
            yield
        finally:
            jobs.stop()
            loop_jobs.stop()
            registry.close()
            if keys is not None:
                keys.close()
            database.close()

    # FastAPIOffline serves Swagger UI and ReDoc from files in its package: /docs works with no network.
    app = FastAPIOffline(
        title="ragtune", version=__version__, lifespan=lifespan,
        description="OpenAI-compatible RAG API with sources, knowledge-base management and feedback. "
        "Authenticate with 'Authorization: Bearer <key>' (keys from 'ragtune keys create').",
    )
    app.state.server = state
    app.include_router(openai_api.router)
    app.include_router(kb_api.router)
    app.include_router(loop_api.router)
    _add_error_handlers(app)
    _add_health(app, state)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def _add_health(app: FastAPI, state: ServerState) -> None:
    @app.get("/healthz", tags=["Operations"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["Operations"], summary="The server can serve: database and knowledge bases readable",
             responses={503: {"description": "Not ready"}})
    def readyz() -> Any:
        try:
            names = state.kbs.names()
            pending = state.jobs.pending()
        except Exception as exc:
            return error_response(503, f"not ready: {exc}", "api_error", "not_ready")
        return {"status": "ready", "knowledge_bases": len(names), "jobs_pending": pending}

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        state.metrics.jobs_pending.set(state.jobs.pending())
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors[:10]]
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
            # curl -d sends a form content type: the JSON body then reads as no object at all.
            return error_response(
                422, f"the request body must be JSON — send the header 'Content-Type: application/json' (this request "
                f"sent {content_type or 'no Content-Type'})", "invalid_request_error", "json_required",
                details=details)
        problems = [_problem(err) for err in errors[:10]]
        kind = "malformed JSON" if any(e.get("type") == "json_invalid" for e in errors) else "invalid request"
        return error_response(422, f"{kind} — " + "; ".join(problems) + " (the request schemas are at /docs)",
                              "invalid_request_error", "invalid_request", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error", None,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}) — see the server log", "api_error",
                              "internal_error")


def _problem(error: dict[str, Any]) -> str:
    """One validation error in words: which field (body fields by their JSON path) and what is wrong with it."""
    where, *path = [str(p) for p in error.get("loc", ())] or ["body"]
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error")
        return f"at character {path[0] if path else '?'}" + (f": {reason}" if reason else "")
    if where == "body":
        return f"{'.'.join(path) or 'body'}: {message}"
    return f"{where} parameter {'.'.join(path)}: {message}"


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length or while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"request body larger than {self.max_bytes:,} bytes — split the upload or "
                                  "raise max_upload_bytes", "invalid_request_error", "request_too_large")
        await response(scope, receive, send)


class _TooLarge(BaseException):
    """A BaseException so that body parsers, which turn any Exception into a 400, let it through to BodyLimit."""


class RequestMetrics:
    """Observes each request's latency under its route template (not the raw path, which would explode labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started)
