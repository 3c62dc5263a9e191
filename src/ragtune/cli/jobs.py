"""``ragtune jobs``: list and follow a running server's ingestion jobs over its HTTP API."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import JsonOpt, console, emit, err_console, fail, progress_bar

POLL_S = 0.5
ACTIVE = ("queued", "running")


def jobs(
    job_id: Annotated[str | None, typer.Argument(help="One job to show (or follow); all recent jobs when left out.",
                                                 show_default=False)] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="The server. [default: $RAGTUNE_URL, else http://SERVER_HOST:SERVER_PORT from the settings: "
        "http://127.0.0.1:8080]")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="An API key (reader or above). [default: $RAGTUNE_API_KEY]")] = None,
    kb: Annotated[str | None, typer.Option(
        "--kb", help="Only the jobs of this knowledge base (its name on the server). [default: every one the key "
        "may read]")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep watching until the job (or every job) is done; exit 1 if one failed.")] = False,
    limit: Annotated[int, typer.Option(help="Most recent jobs listed.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List and follow the ingestion jobs of a running 'ragtune serve' (uploads are ingested in the background)."""
    import httpx

    from ragtune.settings import load_settings

    if url is None:
        settings = load_settings()
        url = os.environ.get("RAGTUNE_URL") or f"http://{settings.server_host}:{settings.server_port}"
    key = key or os.environ.get("RAGTUNE_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30) as client:

        def fetch() -> Any:
            path = f"/v1/jobs/{job_id}" if job_id else (f"/v1/kbs/{kb}/jobs" if kb else f"/v1/jobs?limit={limit}")
            try:
                response = client.get(path)
            except httpx.HTTPError as exc:
                fail(f"no ragtune server answered at {url} ({exc}) — start one with 'ragtune serve', or pass --url",
                     as_json)
            if response.status_code == 401 and not key:
                fail(f"{url} wants an API key — pass --key or set RAGTUNE_API_KEY ('ragtune keys create')", as_json)
            if response.status_code >= 400:
                fail(_message(response), as_json)
            body = response.json()
            return body if job_id else body["data"][:limit]

        found = fetch()
        if job_id:
            _one(found, fetch, follow, as_json)
        else:
            _many(found, fetch, follow, as_json)


def _one(job: dict[str, Any], fetch: Any, follow: bool, as_json: bool) -> None:
    if follow and job["status"] in ACTIVE:
        with progress_bar(as_json) as progress:
            task = progress.add_task(f"{job['kb']}: {job['status']}", total=job["files_total"] or None)
            while job["status"] in ACTIVE:
                time.sleep(POLL_S)
                job = fetch()
                current = f" {job['current']}" if job.get("current") else ""
                progress.update(task, completed=job["files_done"], total=job["files_total"] or None,
                                description=f"{job['kb']}: {job['status']}{current}"[:60])
    if as_json:
        emit(job)
    else:
        _show(job)
    if job["status"] == "failed" or (follow and job["errors"]):
        raise typer.Exit(1)


def _many(found: list[dict[str, Any]], fetch: Any, follow: bool, as_json: bool) -> None:
    if follow:
        waiting = err_console.status("waiting for the jobs to finish…")
        with waiting if not as_json and err_console.is_terminal else contextlib.nullcontext() as status:
            while any(j["status"] in ACTIVE for j in found):
                if status is not None:
                    busy = [j for j in found if j["status"] in ACTIVE]
                    status.update(f"{len(busy)} job(s) running: " + ", ".join(
                        f"{j['kb']} {j['files_done']}/{j['files_total']}" for j in busy[:3]))
                time.sleep(POLL_S)
                found = fetch()
    if as_json:
        emit(found)
    elif not found:
        console.print("no jobs yet — upload documents with the web page or POST /v1/kbs/NAME/documents")
    else:
        table = Table("id", "kb", "status", "files", "chunks", "created", "errors")
        for job in found:
            table.add_row(job["id"], escape(job["kb"]), _status(job), f"{job['files_done']}/{job['files_total']}",
                          str(job["chunks"]), _when(job["created_at"]),
                          str(len(job["errors"]) + bool(job["error"])) if job["errors"] or job["error"] else "")
        console.print(table)
    if follow and any(j["status"] == "failed" or j["errors"] for j in found):
        raise typer.Exit(1)


def _show(job: dict[str, Any]) -> None:
    console.print(f"job [bold]{job['id']}[/] on {escape(job['kb'])}: {_status(job)} — {job['files_done']}/"
                  f"{job['files_total']} files, {job['chunks']} chunks, created {_when(job['created_at'])}",
                  highlight=False)
    files = job["files"]
    console.print("files: " + escape(", ".join(files[:10]) + (f" … and {len(files) - 10} more" if len(files) > 10
                                                              else "")), highlight=False)
    report = job.get("report") or {}
    if report:
        console.print(" · ".join(f"{k} {report[k]}" for k in ("added", "updated", "unchanged", "duplicates",
                                                              "skipped", "empty", "failed") if k in report))
    for err in job["errors"]:
        err_console.print(f"[red]failed[/] {escape(err['file'])}: {escape(err['error'])}", highlight=False)
    if job["error"]:
        err_console.print(f"[red]error[/] {escape(job['error'])}", highlight=False)


def _status(job: dict[str, Any]) -> str:
    colour = {"done": "green", "failed": "red", "running": "cyan"}.get(job["status"], "yellow")
    return f"[{colour}]{job['status']}[/]"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} from the server"
