"""The server's tables on both dialects of the Database facade: jobs split by kind with their access groups, keys
with access groups, feedback with its answers' documents and row ids — and older SQLite tables given the new
columns in place, keeping their rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines import unique_name

from ragtune.feedback import FeedbackStore
from ragtune.ingest import IngestReport
from ragtune.server.jobs import JobQueue
from ragtune.server.keys import KeyStore
from ragtune.store.factory import StoreLocation, write_pointer
from ragtune.store.postgres import Database, PostgresDatabase, SqliteDatabase
from ragtune.types import Answer, ChunkMeta, Hit

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db: Database = SqliteDatabase(tmp_path / "server.db")
    else:  # a schema of its own in the session's Postgres
        db = PostgresDatabase(request.getfixturevalue("postgres_url"), unique_name("server").replace("-", "_"))
    yield db
    db.close()


class _Kb:
    def __init__(self) -> None:
        self.groups: list[list[str] | None] = []

    def ingest(self, paths: list[Path], *, on_progress=None, acl=None) -> IngestReport:
        self.groups.append(acl)
        return IngestReport(added=[str(p) for p in paths])


def test_queues_split_jobs_by_kind_and_ingestion_jobs_keep_their_groups(database: Database, tmp_path: Path) -> None:
    kb = _Kb()
    ran: list[list[str]] = []
    ingest = JobQueue(database, lambda name: kb)
    loop = JobQueue(database, lambda name: kb, runners={"loop": lambda job, progress: ran.append(job.files) or {
        "stages": len(job.files)}})
    ingest.start()
    loop.start()
    try:
        grouped = ingest.submit("kb", [tmp_path / "a.txt"], acl=["hr", "legal"])
        run = loop.submit("kb", ["eval", "retrieval"], kind="loop")
        assert ingest.wait(grouped.id, 30).status == "done"
        finished = loop.wait(run.id, 30)
        assert (finished.status, finished.kind, finished.report) == ("done", "loop", {"stages": 2})
        assert kb.groups == [["hr", "legal"]] and ran == [["eval", "retrieval"]]
        assert ingest.get(grouped.id).acl == ["hr", "legal"]  # type: ignore[union-attr]
        assert [j.id for j in ingest.list("kb")] == [grouped.id] and [j.id for j in loop.list()] == [run.id]
        assert ingest.pending() == loop.pending() == 0
    finally:
        ingest.stop()
        loop.stop()


def test_keys_keep_their_access_groups(database: Database) -> None:
    keys = KeyStore(database)
    secret, record = keys.create("team", "reader", "hr staff", groups="legal,hr")
    plain, _ = keys.create("team", "writer")
    assert record.groups == ("hr", "legal")
    assert keys.verify(secret) == record and keys.verify(plain).groups is None  # type: ignore[union-attr]
    assert [k.groups for k in keys.list()] == [("hr", "legal"), None]
    keys.close()


def test_feedback_records_documents_and_reads_after_an_id(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    local, pg = tmp_path / "local", tmp_path / "pg"
    local.mkdir()
    sqlite3.connect(local / "ragtune.db").close()  # feedback lives beside a local KB's chunks
    write_pointer(pg, StoreLocation("postgres", request.getfixturevalue("postgres_url"), unique_name()))
    hit = Hit(chunk_id="d1-1-0", document_id="d1", source="file:///d1.md", text="Refunds take 45 days.", score=1.0,
              meta=ChunkMeta())
    for kb in (local, pg):
        with FeedbackStore(kb) as store:
            store.record_answer(Answer(id="a1", question="Refunds?", answer="45 days [1].", grounded=True,
                                       sources=[hit]))
            first = store.add("a1", "up")
            second = store.add("a1", "down", comment="too short")
            records = list(store.records())
            assert [(r.id, r.rating, r.documents) for r in records] == [(first, "up", ["d1"]),
                                                                      (second, "down", ["d1"])]
            assert [r.id for r in store.records(after=first)] == [second]


def test_older_sqlite_tables_get_the_new_columns_in_place(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    with sqlite3.connect(db) as conn:  # the tables as servers before access groups and job kinds made them
        conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, kb TEXT NOT NULL, status TEXT NOT NULL, paths TEXT NOT"
                     " NULL, files_total INTEGER NOT NULL DEFAULT 0, files_done INTEGER NOT NULL DEFAULT 0, chunks"
                     " INTEGER NOT NULL DEFAULT 0, current TEXT NOT NULL DEFAULT '', errors TEXT NOT NULL DEFAULT"
                     " '[]', report TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,"
                     " started_at REAL, finished_at REAL)")
        conn.execute("INSERT INTO jobs (id, kb, status, paths, created_at) VALUES ('old', 'kb', 'done', '[]', 1)")
        conn.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, kb TEXT NOT NULL,"
                     " role TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, revoked_at REAL)")
        conn.execute("INSERT INTO api_keys VALUES ('k1', 'x', 'kb', 'reader', '', 1, NULL)")
    queue = JobQueue(db, lambda name: _Kb())
    old = queue.get("old")
    assert old is not None and (old.kind, old.acl) == ("ingest", None)
    queue.stop()
    keys = KeyStore(db)
    assert [(k.id, k.groups) for k in keys.list()] == [("k1", None)]
    keys.close()
