"""Background jobs — ingestion, and other kinds such as loop runs — persisted in the server database, run one at a
time per queue by each server's worker thread, resumed after a restart — or, on Postgres, by another server when the
one running a job dies."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ragtune.ingest import IngestReport, Progress
from ragtune.store.postgres import Database, PostgresDatabase, ensure_columns, lock_key, open_database

log = logging.getLogger(__name__)

# A job the server was stopped in this many times is given up: it may be what brings the server down.
MAX_ATTEMPTS = 3
_PROGRESS_EVERY_S = 0.3

_SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kb TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    paths TEXT NOT NULL,
    files_total INTEGER NOT NULL DEFAULT 0,
    files_done INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    current TEXT NOT NULL DEFAULT '',
    errors TEXT NOT NULL DEFAULT '[]',
    report TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION
)"""
# Added later, in place on older databases: the access groups the job's documents get (JSON; NULL: none given),
# and what kind of job it is ('ingest', 'loop', ...; NULL: an ingestion job of an older server).
_ADDED_COLUMNS = {"acl": "TEXT", "kind": "TEXT"}


@dataclass
class Job:
    """An ingestion job as the API shows it; ``errors`` lists the files that failed and why."""

    id: str
    kb: str
    status: str
    files: list[str]
    files_total: int = 0
    files_done: int = 0
    chunks: int = 0
    current: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    acl: list[str] | None = None
    kind: str = "ingest"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = [Path(f).name for f in self.files]  # not the server's paths
        data["progress"] = round(self.files_done / self.files_total, 4) if self.files_total else (
            1.0 if self.status == "done" else 0.0)
        return data


class Ingests(Protocol):
    """What the worker needs of a knowledge base."""

    def ingest(self, paths: list[Path], *, on_progress: Callable[[Progress], None] | None = None,
               acl: list[str] | None = None) -> IngestReport: ...


#: Runs a job of another kind than ingestion: (job, progress(step, done, total)) -> the job's report.
JobRunner = Callable[[Job, Callable[[str, int, int], None]], dict[str, Any]]


class _Stopping(Exception):
    """Raised inside an ingestion run to end it when the server shuts down (committed documents are kept)."""


class JobQueue:
    """The ``jobs`` table of the server database and the worker thread that runs it.

    Ingestion commits document by document, so a job cut short by a crash or a shutdown leaves no half-stored
    document; it is queued again, and the re-run skips what was already stored (by hash). On SQLite one server
    owns the queue and re-queues its interrupted jobs on start. On Postgres any number of servers share it: a
    server claims a job by taking a lock on it with its own connection and holds the lock while the job runs, so
    no job runs twice; when a server dies, Postgres drops its connection and the lock, and the next server to
    look claims the job (a 'running' job nobody holds) and resumes it. Each queue runs only the jobs of its kinds.
    """

    def __init__(
        self, db: str | Path | Database, open_kb: Callable[[str], Ingests],
        on_finished: Callable[[Job, IngestReport | None], None] | None = None, *, nice: int = 10,
        runners: dict[str, JobRunner] | None = None,
    ) -> None:
        """``runners``: this queue runs only jobs of these kinds, each with its runner (default: ingestion with
        ``open_kb``). Several queues on one database split the jobs by kind, each with its own worker."""
        self._open_kb = open_kb
        self._on_finished = on_finished
        self._nice = nice
        self._runners = runners or {}
        self._kinds = tuple(self._runners) or ("ingest",)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # A database handed in is shared (the server's keys, another queue): its owner closes it.
        self._owns_db = isinstance(db, (str, Path))
        self._db = open_database(db)
        self._db.execute(_SCHEMA)
        ensure_columns(self._db, "jobs", _ADDED_COLUMNS)

    def _mine(self) -> str:
        """The condition selecting this queue's kinds (its parameters are ``self._kinds``)."""
        return f"coalesce(kind, 'ingest') IN ({', '.join('?' * len(self._kinds))})"

    # ------------------------------------------------------------------ API

    def submit(self, kb: str, paths: Sequence[str | Path], *, acl: list[str] | None = None, kind: str = "ingest"
               ) -> Job:
        """Queue the ingestion of ``paths`` (``acl``: the access groups their documents get), or with another
        ``kind`` a job of that kind (``paths`` then hold its arguments, e.g. the stages of a loop run)."""
        job = Job(uuid.uuid4().hex[:16], kb, "queued", [str(p) for p in paths],
                  files_total=len(paths) if kind == "ingest" else 0, created_at=time.time(), acl=acl, kind=kind)
        self._db.execute(
            "INSERT INTO jobs (id, kb, status, paths, files_total, created_at, acl, kind)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, kb, job.status, json.dumps(job.files), job.files_total, job.created_at,
             json.dumps(acl) if acl is not None else None, kind),
        )
        self._wake.set()
        return job

    def get(self, job_id: str) -> Job | None:
        rows = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def list(self, kb: str | None = None, limit: int = 50) -> list[Job]:
        """Recent jobs of this queue's kinds, newest first (``kb``: of that knowledge base only)."""
        sql = f"SELECT * FROM jobs WHERE {self._mine()}" + (" AND kb = ?" if kb else "") + (
            " ORDER BY created_at DESC LIMIT ?")
        return [_job(r) for r in self._db.execute(sql, (*self._kinds, *((kb,) if kb else ()), limit))]

    def pending(self) -> int:
        """Jobs of this queue's kinds waiting or running."""
        rows = self._db.execute(
            f"SELECT count(*) AS n FROM jobs WHERE status IN ('queued', 'running') AND {self._mine()}", self._kinds)
        return int(rows[0]["n"])

    def forget_kb(self, kb: str) -> None:
        """Fail the queued jobs of a deleted knowledge base."""
        self._db.execute(
            "UPDATE jobs SET status = 'failed', error = 'the knowledge base was deleted', finished_at = ?"
            " WHERE kb = ? AND status = 'queued'", (time.time(), kb),
        )

    # ------------------------------------------------------------------ worker

    def start(self) -> None:
        """Re-queue jobs a previous run left running (SQLite: this server was their only runner), then start the
        worker. On Postgres nothing is re-queued here: the worker claims jobs whose server is gone."""
        if self._db.dialect == "sqlite":
            with self._db.transaction() as tx:
                tx.execute(
                    "UPDATE jobs SET status = 'failed', finished_at = ?, error = 'the server stopped during this "
                    "job ' || attempts || ' times — check the files and upload them again' "
                    f"WHERE status = 'running' AND attempts >= ? AND {self._mine()}",
                    (time.time(), MAX_ATTEMPTS, *self._kinds),
                )
                resumed = tx.execute(f"UPDATE jobs SET status = 'queued' WHERE status = 'running' AND {self._mine()}"
                                     " RETURNING id", self._kinds)
            if resumed:
                log.info("resuming %d %s job(s) interrupted by a restart", len(resumed), "/".join(self._kinds))
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name=f"ragtune-{'-'.join(self._kinds)}-jobs", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker; a running job ends at its next progress step and is resumed on the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._owns_db:
            self._db.close()

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until a job is done or failed (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if job.status in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.05)

    def _work(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            # Ingestion yields the CPU to request handling: a lower priority for this thread only (Linux).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        while not self._stop.is_set():
            try:
                with self._claimed() as job:
                    if job is not None:
                        self._run(job)
            except Exception:  # a database hiccup must not end the worker
                log.exception("the ingestion worker failed to claim a job; retrying")
                job = None
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()

    @contextlib.contextmanager
    def _claimed(self) -> Iterator[Job | None]:
        """The next job to run, claimed for as long as the block runs (None: nothing to do)."""
        if not isinstance(self._db, PostgresDatabase):
            yield self._claim()
            return
        with self._db.session() as session:
            job = self._claim_postgres(session)
            try:
                yield job
            finally:
                if job is not None:
                    session.execute("SELECT pg_advisory_unlock(?)", (lock_key("job", job.id),))

    def _claim(self) -> Job | None:
        with self._db.transaction() as tx:
            rows = tx.execute(f"SELECT * FROM jobs WHERE status = 'queued' AND {self._mine()} ORDER BY created_at"
                              " LIMIT 1", self._kinds)
            if not rows:
                return None
            tx.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE id = ?",
                       (time.time(), rows[0]["id"]))
        return _job({**rows[0], "status": "running", "attempts": rows[0]["attempts"] + 1})

    def _claim_postgres(self, session: Any) -> Job | None:
        # Queued jobs, and running ones whose server may have died: whoever gets a job's lock owns the job.
        candidates = session.execute(
            f"SELECT id FROM jobs WHERE status IN ('queued', 'running') AND {self._mine()} ORDER BY created_at"
            " LIMIT 100", self._kinds)
        for candidate in candidates:
            key = lock_key("job", candidate["id"])
            if not session.execute("SELECT pg_try_advisory_lock(?) AS got", (key,))[0]["got"]:
                continue  # a live server runs it
            rows = session.execute("SELECT * FROM jobs WHERE id = ? AND status IN ('queued', 'running')",
                                   (candidate["id"],))
            if not rows:  # finished between the two queries
                session.execute("SELECT pg_advisory_unlock(?)", (key,))
                continue
            row = rows[0]
            if row["status"] == "running":
                log.info("job %s was left running by a server that stopped; resuming it", row["id"])
                if row["attempts"] >= MAX_ATTEMPTS:
                    session.execute(
                        "UPDATE jobs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                        (time.time(), f"the server stopped during this job {row['attempts']} times — check the "
                                      "files and upload them again", row["id"]))
                    session.execute("SELECT pg_advisory_unlock(?)", (key,))
                    continue
            session.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE id = ?",
                            (time.time(), row["id"]))
            return _job({**row, "status": "running", "attempts": row["attempts"] + 1})
        return None

    def _run(self, job: Job) -> None:
        if job.kind != "ingest":
            self._run_other(job)
            return
        last = 0.0

        def progress(p: Progress) -> None:
            nonlocal last
            if self._stop.is_set():
                raise _Stopping
            now = time.monotonic()
            if now - last >= _PROGRESS_EVERY_S or p.files_done == p.files_total:
                last = now
                self._update(job.id, files_done=p.files_done, files_total=p.files_total, chunks=p.chunks,
                             current=Path(p.current).name if p.current else "")

        report: IngestReport | None = None
        try:
            kb = self._open_kb(job.kb)
            groups = {"acl": job.acl} if job.acl is not None else {}
            report = kb.ingest([Path(p) for p in job.files], on_progress=progress, **groups)
        except _Stopping:
            log.info("job %s interrupted by shutdown; it resumes on the next start", job.id)
            return
        except Exception as exc:
            log.exception("ingestion job %s failed", job.id)
            self._finish(job, "failed", None, error=f"{type(exc).__name__}: {exc}")
            return
        all_failed = bool(job.files) and len(report.failed) >= len(job.files)
        self._finish(job, "failed" if all_failed else "done", report,
                     error="no file could be ingested — see errors" if all_failed else None)

    def _run_other(self, job: Job) -> None:
        """A job of another kind: its runner reports steps as progress and returns the job's report."""
        last = 0.0

        def progress(step: str, done: int, total: int) -> None:
            nonlocal last
            if self._stop.is_set():
                raise _Stopping
            now = time.monotonic()
            if now - last >= _PROGRESS_EVERY_S or done == total:
                last = now
                self._update(job.id, files_done=done, files_total=total, current=step[:200])

        try:
            report = self._runners[job.kind](job, progress)
        except _Stopping:
            log.info("job %s interrupted by shutdown; it resumes on the next start", job.id)
            return
        except Exception as exc:
            log.exception("%s job %s failed", job.kind, job.id)
            self._update(job.id, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time(),
                         current="")
            return
        self._update(job.id, status="done", report=json.dumps(report, ensure_ascii=False, default=str),
                     finished_at=time.time(), current="")

    def _update(self, job_id: str, **values: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))

    def _finish(self, job: Job, status: str, report: IngestReport | None, error: str | None = None) -> None:
        errors = [{"file": Path(s).name, "error": e} for s, e in (report.failed if report else [])]
        summary = report.to_dict() if report else None
        if summary:  # clients see file names, never the server's paths
            summary["failures"] = [{"source": Path(f["source"]).name, "error": f["error"]} for f in summary["failures"]]
            for key in ("skipped_files", "empty_files"):
                summary[key] = [Path(p).name for p in summary.get(key, [])]
        values: dict[str, Any] = dict(status=status, errors=json.dumps(errors, ensure_ascii=False),
                                      report=json.dumps(summary) if summary else None, error=error,
                                      finished_at=time.time(), current="")
        if report is not None:
            values.update(files_done=job.files_total, chunks=report.chunks)
        self._update(job.id, **values)
        finished = self.get(job.id)
        if self._on_finished is not None and finished is not None:
            self._on_finished(finished, report)


def _job(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"], kb=row["kb"], status=row["status"], files=json.loads(row["paths"]),
        files_total=row["files_total"], files_done=row["files_done"], chunks=row["chunks"], current=row["current"],
        errors=json.loads(row["errors"]), report=json.loads(row["report"]) if row["report"] else None,
        error=row["error"], attempts=row["attempts"], created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], acl=json.loads(row["acl"]) if row["acl"] is not None else None,
        kind=row["kind"] or "ingest",
    )
