"""Feedback store: answers served and the 👍/👎 (with corrections) users gave them, kept beside the KB's chunks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ragtune.errors import ConfigError, StoreError
from ragtune.guard.pii import redact_value
from ragtune.store.factory import read_pointer
from ragtune.store.local import DB_FILE
from ragtune.store.postgres import Database, PostgresDatabase, SqliteDatabase, ensure_columns, kb_schema
from ragtune.types import Answer

Rating = Literal["up", "down"]
RATINGS: tuple[str, ...] = ("up", "down")

# Tables of their own beside the store's: the store's schema and this one evolve independently.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS answers (
        id TEXT PRIMARY KEY,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        refused INTEGER NOT NULL DEFAULT 0,
        model TEXT NOT NULL DEFAULT '',
        contexts TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL,
        cited TEXT NOT NULL DEFAULT '[]'
    )""",
    """CREATE TABLE IF NOT EXISTS feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        answer_id TEXT NOT NULL REFERENCES answers (id),
        rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
        corrected_answer TEXT,
        comment TEXT,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS feedback_answer ON feedback (answer_id)",
)
# Columns added after the first release, with their definitions: added in place to older knowledge bases.
# ``documents``: the document ids of the answer's sources (NULL for answers recorded before it existed).
_ADDED_COLUMNS = {"answers": {"cited": "TEXT NOT NULL DEFAULT '[]'", "documents": "TEXT"}}
#: Decides whether an exported record may be shown, from its sources' document ids (None: not recorded).
Visible = Callable[[list[str] | None], bool]


def _postgres(statement: str) -> str:
    # The same tables in Postgres: 64-bit serial ids and double-precision timestamps.
    return statement.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY").replace(
        " REAL ", " DOUBLE PRECISION ")


def feedback_database(kb_dir: str | Path) -> Database:
    """Where a KB's feedback lives: its Postgres schema for a KB stored in Postgres, else the folder's ragtune.db."""
    location = read_pointer(Path(kb_dir))
    if location is not None and location.kind == "postgres":
        return PostgresDatabase(location.url, kb_schema(location.name))
    db_path = Path(kb_dir) / DB_FILE
    if not db_path.exists():
        raise StoreError(f"no knowledge base at {kb_dir} — create it first ('ragtune init --kb {kb_dir}')")
    return SqliteDatabase(db_path)


@dataclass
class FeedbackRecord:
    """One rating joined with the answer it rates: the unit the training-data exporters read."""

    answer_id: str
    question: str
    answer: str
    rating: Rating
    contexts: list[str] = field(default_factory=list)
    #: The sources the answer cites: their number in ``contexts`` (1-based) and chunk id.
    cited: list[dict[str, Any]] = field(default_factory=list)
    corrected_answer: str | None = None
    comment: str | None = None
    created_at: str = ""
    #: The document ids of ``contexts`` (None for answers recorded before ragtune kept them).
    documents: list[str] | None = None
    #: The rating's row id: increasing, so a reader can take only the ratings given after one it has seen.
    id: int = 0

    def to_json(self) -> dict[str, Any]:
        """The exported JSONL line: optional fields appear only when given."""
        line: dict[str, Any] = {"question": self.question, "answer": self.answer, "rating": self.rating}
        if self.corrected_answer:
            line["corrected_answer"] = self.corrected_answer
        if self.comment:
            line["comment"] = self.comment
        line.update(contexts=self.contexts, answer_id=self.answer_id, created_at=self.created_at)
        if self.cited:
            line["cited"] = self.cited
        return line


class FeedbackStore:
    """Answers and their feedback beside the KB's chunks: in ``KB/ragtune.db`` through a connection of its own
    (WAL allows both), or in the KB's schema when the KB lives in Postgres (shared by every server)."""

    def __init__(self, kb_dir: str | Path) -> None:
        self._db = feedback_database(kb_dir)
        postgres = self._db.dialect == "postgres"
        with self._db.transaction() as tx:
            for statement in _SCHEMA:
                tx.execute(_postgres(statement) if postgres else statement)
        for table, columns in _ADDED_COLUMNS.items():
            ensure_columns(self._db, table, columns)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record_answer(self, answer: Answer) -> None:
        """Remember an answer served, with the source texts it was given and the ones it cites, so feedback
        can refer to it by id (and a 👍 can become retrieval training data)."""
        contexts = [hit.text for hit in answer.sources]
        cited = [{"number": c.number, "chunk_id": c.chunk_id} for c in answer.citations
                 if 1 <= c.number <= len(contexts)]
        documents = [hit.document_id for hit in answer.sources]
        self._db.execute(
            "INSERT INTO answers (id, question, answer, refused, model, contexts, created_at, cited, documents)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET question = excluded.question,"
            " answer = excluded.answer, refused = excluded.refused, model = excluded.model,"
            " contexts = excluded.contexts, created_at = excluded.created_at, cited = excluded.cited,"
            " documents = excluded.documents",
            (answer.id, answer.question, answer.answer, int(answer.refused), answer.model,
             json.dumps(contexts, ensure_ascii=False), time.time(), json.dumps(cited), json.dumps(documents)),
        )

    def has_answer(self, answer_id: str) -> bool:
        return bool(self._db.execute("SELECT 1 FROM answers WHERE id = ?", (answer_id,)))

    def add(
        self, answer_id: str, rating: str, *, corrected_answer: str | None = None, comment: str | None = None
    ) -> int:
        """Store a rating of a served answer; returns the feedback id."""
        if rating not in RATINGS:
            raise ConfigError(f"rating must be 'up' or 'down', got {rating!r}")
        with self._db.transaction() as tx:
            if not tx.execute("SELECT 1 FROM answers WHERE id = ?", (answer_id,)):
                raise StoreError(f"no answer with id {answer_id!r} in this knowledge base — rate an answer it gave")
            rows = tx.execute(
                "INSERT INTO feedback (answer_id, rating, corrected_answer, comment, created_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (answer_id, rating, corrected_answer or None, comment or None, time.time()),
            )
        return int(rows[0]["id"])

    def records(self, *, after: int = 0) -> Iterator[FeedbackRecord]:
        """Every rating with its answer, oldest first (``after``: only ratings with a larger id)."""
        rows = self._db.execute(
            "SELECT f.answer_id, a.question, a.answer, f.rating, a.contexts, a.cited, f.corrected_answer,"
            " f.comment, f.created_at, a.documents, f.id FROM feedback f JOIN answers a ON a.id = f.answer_id"
            " WHERE f.id > ? ORDER BY f.id", (after,)
        )
        for row in rows:
            yield FeedbackRecord(
                answer_id=row["answer_id"], question=row["question"], answer=row["answer"], rating=row["rating"],
                contexts=json.loads(row["contexts"]), cited=json.loads(row["cited"]),
                corrected_answer=row["corrected_answer"], comment=row["comment"],
                created_at=datetime.fromtimestamp(row["created_at"], UTC).isoformat(timespec="seconds"),
                documents=json.loads(row["documents"]) if row["documents"] is not None else None,
                id=int(row["id"]),
            )

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every answer and every rating as stored (for copying a KB to another store)."""
        answers = [dict(r) for r in self._db.execute("SELECT * FROM answers ORDER BY created_at, id")]
        ratings = [dict(r) for r in self._db.execute("SELECT * FROM feedback ORDER BY id")]
        return answers, ratings

    def add_rows(self, answers: list[dict[str, Any]], ratings: list[dict[str, Any]]) -> int:
        """Store answers and ratings taken from another KB (``rows``); answers already here are kept, and so are
        ratings equal to one here (so a copy can be re-run). Returns the number of ratings added."""
        columns = ("id", "question", "answer", "refused", "model", "contexts", "created_at", "cited", "documents")
        added = 0
        with self._db.transaction() as tx:
            for row in answers:
                # ``documents`` is absent from rows read before the column existed (NULL: not recorded).
                tx.execute(f"INSERT INTO answers ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                           " ON CONFLICT (id) DO NOTHING", [row.get(c) for c in columns])
            for row in ratings:
                values = (row["answer_id"], row["rating"], row["corrected_answer"], row["comment"], row["created_at"])
                if tx.execute("SELECT 1 FROM feedback WHERE answer_id = ? AND rating = ? AND created_at = ?",
                              (row["answer_id"], row["rating"], row["created_at"])):
                    continue
                tx.execute("INSERT INTO feedback (answer_id, rating, corrected_answer, comment, created_at)"
                           " VALUES (?, ?, ?, ?, ?)", values)
                added += 1
        return added

    def counts(self) -> dict[str, int]:
        rows = {r["rating"]: r["n"] for r in self._db.execute(
            "SELECT rating, count(*) AS n FROM feedback GROUP BY rating")}
        return {rating: int(rows.get(rating, 0)) for rating in RATINGS}


def feedback_rows(
    kb_dir: str | Path, *, visible: Visible | None = None, redact: bool = True
) -> Iterator[tuple[FeedbackRecord, dict[str, Any]]]:
    """Each rating as its exported JSON line, oldest first: only records ``visible`` allows (from their sources'
    document ids), with personal data redacted unless ``redact`` is False."""
    with FeedbackStore(kb_dir) as store:
        records = list(store.records())
    for record in records:
        if visible is not None and not visible(record.documents):
            continue
        line = record.to_json()
        yield record, (redact_value(line) if redact else line)


def export_feedback(
    kb_dir: str | Path, out: str | Path, *, visible: Visible | None = None, redact: bool = True
) -> int:
    """Write the ratings of the knowledge base at ``kb_dir`` as JSONL to ``out`` (personal data redacted unless
    ``redact`` is False; only records ``visible`` allows); returns the number of lines."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as f:
        for _, line in feedback_rows(kb_dir, visible=visible, redact=redact):
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
    return count


def feedback_pairs(kb_dir: str | Path, *, redact: bool = True) -> list[dict[str, Any]]:
    """Retrieval training pairs from 👍 answers: the question with each source the answer cited (text and chunk
    id, so mined negatives never include it), personal data redacted unless ``redact`` is False. An answer's
    latest rating counts; one rated 👎 last gives none."""
    latest: dict[str, FeedbackRecord] = {}
    with FeedbackStore(kb_dir) as store:
        for record in store.records():
            latest[record.answer_id] = record
    pairs: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for record in latest.values():
        if record.rating != "up":
            continue
        for source in record.cited:
            key = (" ".join(record.question.split()).casefold(), source["chunk_id"])
            if key in seen:
                continue
            seen.add(key)
            pair = {"query": record.question, "positive": record.contexts[source["number"] - 1],
                    "chunk_id": source["chunk_id"], "query_id": record.answer_id, "source": "feedback"}
            if redact:
                pair.update(query=redact_value(pair["query"]), positive=redact_value(pair["positive"]))
            pairs.append(pair)
    return pairs
