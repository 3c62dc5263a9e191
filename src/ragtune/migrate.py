"""Copy a knowledge base to another store (local ↔ Postgres ↔ Milvus) with its vectors, then check the copy.

Nothing is re-embedded: documents, chunks (offsets, metadata), vectors, BM25 tokens and feedback are copied as
stored. The source is only read. The copy is checked by counts per document and by searching both stores with
the same queries (each sampled chunk's own vector, and its first words), which needs no embedding model.
A copy that was interrupted resumes: documents already copied unchanged are skipped.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError, StoreError
from ragtune.feedback import FeedbackStore
from ragtune.settings import CONFIG_FILE, load_settings
from ragtune.store.base import ChunkStore
from ragtune.store.factory import StoreLocation, locate, open_store, parse_store, read_pointer, stored_embedder
from ragtune.store.local import CONTEXT_KEY, DB_FILE, PRECISION_KEY, DocumentRecord, DocumentUpdate

log = logging.getLogger(__name__)

#: (documents copied, documents in the source)
MigrateProgress = Callable[[int, int], None]
#: What a KB records about how its chunks were made (vector precision, chunk context): the copy must say the
#: same, or its queries would be encoded and tokenised unlike its chunks.
CARRIED_META = (PRECISION_KEY, CONTEXT_KEY)


@dataclass
class MigrationReport:
    """What a migration copied and how the copy compares with the source."""

    source: str
    target: str
    out: str
    documents: int = 0
    copied: int = 0
    skipped: int = 0
    chunks: int = 0
    feedback: int = 0
    seconds: float = 0.0
    counts_match: bool = False
    queries: int = 0
    #: Queries whose top 10 (by document and chunk position) is the same in both stores, per retriever.
    identical_top10: dict[str, int] = field(default_factory=dict)
    #: Mean share of the source's top 10 found in the copy's, per retriever.
    top10_overlap: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.counts_match and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items()}, "ok": self.ok}


def migrate(
    source: str | Path, to: str, *, out: str | Path | None = None, name: str | None = None, batch: int = 200,
    check_queries: int = 20, on_progress: MigrateProgress | None = None,
) -> MigrationReport:
    """Copy the KB at ``source`` into the store ``to`` ('local', 'postgresql://…', 'milvus://…'), as the KB folder
    ``out`` (default: SOURCE-KIND beside the source) named ``name`` in the target store (default: the source's)."""
    started = time.perf_counter()
    source = Path(source)
    settings = load_settings(source)
    origin = locate(source, settings)
    if stored_embedder(source, origin) is None:
        raise StoreError(f"no knowledge base at {source} — check the path")
    target = parse_store(to, name or origin.name)
    out = Path(out) if out is not None else source.with_name(f"{source.resolve().name}-{target.kind}")
    if out.resolve() == source.resolve():
        raise ConfigError(f"--out {out} is the source folder — give the copy a folder of its own")
    if (target.kind, target.url, target.name) == (origin.kind, origin.url, origin.name) and origin.kind != "local":
        raise ConfigError(f"{source} already lives in {target.describe()} — choose another store or --name")
    _check_out(out, target)
    report = MigrationReport(source=f"{source} ({origin.describe()})", target=target.describe(), out=str(out))
    out.mkdir(parents=True, exist_ok=True)
    if (source / CONFIG_FILE).is_file() and not (out / CONFIG_FILE).exists():
        shutil.copy2(source / CONFIG_FILE, out / CONFIG_FILE)  # same chunking, retrieval and answer settings
    src = _open_existing(source, origin, settings)
    try:
        dst = open_store(out, target, load_settings(out), embedder_name=src.embedder_name, dim=src.dim, create=True,
                         checkpoint=src.checkpoint)
        try:
            for key in CARRIED_META:
                value = src.get_meta(key)
                if value is not None:
                    dst.set_meta(key, value)
            bulk = getattr(dst, "bulk_load", None)
            # Into an empty Postgres KB, the vector index is built once at the end (several times faster).
            with bulk() if bulk is not None and not dst.count() else contextlib.nullcontext():
                _copy(src, dst, report, batch, on_progress)
            report.feedback = _copy_feedback(source, out)
            _check(src, dst, report, check_queries)
        finally:
            dst.close()
    finally:
        src.close()
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _open_existing(directory: Path, location: StoreLocation, settings: Any) -> ChunkStore:
    found = stored_embedder(directory, location)
    if found is None:
        raise StoreError(f"no knowledge base at {directory} — check the path")
    return open_store(directory, location, settings, embedder_name=found[0], dim=found[1], create=False)


def _check_out(out: Path, target: StoreLocation) -> None:
    """The copy's folder may be new, or hold an earlier (interrupted) copy into the same place."""
    if not out.exists() or not any(out.iterdir()):
        return
    recorded = read_pointer(out)
    if recorded is None and (out / DB_FILE).exists():
        recorded = StoreLocation("local", "local", out.resolve().name)
    if recorded is None:
        raise ConfigError(f"{out} exists and is not a knowledge base — choose an empty --out folder")
    if (recorded.kind, recorded.url, recorded.name) != (target.kind, target.url, target.name) and not (
            recorded.kind == target.kind == "local"):
        raise ConfigError(f"{out} holds a knowledge base in {recorded.describe()}, not {target.describe()} — choose "
                          "another --out folder")


def _copy(src: ChunkStore, dst: ChunkStore, report: MigrationReport, batch: int,
          on_progress: MigrateProgress | None) -> None:
    records = src.documents()
    report.documents = len(records)
    existing = {d.id: d for d in dst.documents()}
    # In the order the source wrote their chunks, so the copy numbers its chunks in the same relative order: ranks
    # that tie (BM25 often does) go to the lower id in every store, and the copy ranks as the source does. Then the
    # documents without chunks, originals before their duplicates (a duplicate's original must be there first).
    written = getattr(src, "write_order", None)
    position = {doc_id: i for i, doc_id in enumerate(written())} if written else {}
    order = sorted(records, key=lambda d: (d.status == "duplicate", position.get(d.id, len(position)), d.uri))
    done = 0
    for start in range(0, len(order), batch):
        part = order[start:start + batch]
        todo = [d for d in part if not _same(d, existing.get(d.id))]
        report.skipped += len(part) - len(todo)
        for update in src.export([d.id for d in todo]):
            dst.apply(_as_written(update))
            report.copied += 1
            report.chunks += len(update.chunks)
        done += len(part)
        if on_progress:
            on_progress(done, len(order))
    dst.save_indexes()


def _same(record: DocumentRecord, copy: DocumentRecord | None) -> bool:
    return copy is not None and (copy.content_hash, copy.version, copy.status, copy.chunk_count) == (
        record.content_hash, record.version, record.status, record.chunk_count)


def _as_written(update: DocumentUpdate) -> list[DocumentUpdate]:
    """The updates that leave a copy of this document: a failed document that kept its last good version is
    stored good first, then marked failed (which keeps the chunks)."""
    if update.record.status != "failed" or not update.chunks:
        return [update]
    good = DocumentRecord(**{**update.record.__dict__, "status": "ok", "error": None})
    return [DocumentUpdate(good, update.chunks, update.vectors, update.tokens), DocumentUpdate(update.record)]


def _copy_feedback(source: Path, out: Path) -> int:
    with FeedbackStore(source) as src, FeedbackStore(out) as dst:
        answers, ratings = src.rows()
        return dst.add_rows(answers, ratings)


def _key(store: ChunkStore, ranking: list[tuple[int, float]]) -> list[tuple[str, int]]:
    hits = store.get([i for i, _ in ranking])
    return [(hits[i].document_id, hits[i].meta.chunk_index) for i, _ in ranking if i in hits]


def _check(src: ChunkStore, dst: ChunkStore, report: MigrationReport, queries: int) -> None:
    a, b = src.stats(), dst.stats()
    for key in ("documents", "failed", "duplicates", "chunks"):
        if a[key] != b[key]:
            report.problems.append(f"{key}: source {a[key]}, copy {b[key]}")
    copies = {d.id: d for d in dst.documents()}
    for record in src.documents():
        copy = copies.get(record.id)
        if copy is None or (copy.uri, copy.status, copy.chunk_count, copy.content_hash, copy.version) != (
                record.uri, record.status, record.chunk_count, record.content_hash, record.version):
            report.problems.append(f"{record.uri}: differs in the copy")
    for key in CARRIED_META:
        if src.get_meta(key) != dst.get_meta(key):
            report.problems.append(f"{key}: source {src.get_meta(key)!r}, copy {dst.get_meta(key)!r}")
    report.counts_match = not report.problems
    verify = dst.verify()
    report.problems.extend(f"copy: {p}" for p in verify["problems"])
    with_chunks = [d.id for d in src.documents() if d.chunk_count]
    sample = random.Random(0).sample(with_chunks, min(queries, len(with_chunks)))
    overlap: dict[str, list[float]] = {"dense": [], "sparse": []}
    identical = {"dense": 0, "sparse": 0}
    for doc_id in sample:
        chunk = src.document_chunks(doc_id)[0]
        vector = src.vectors([chunk.chunk_id])[chunk.chunk_id]
        text = " ".join(chunk.text.split()[:12])
        pairs = {"dense": (src.dense_search(vector, 10), dst.dense_search(vector, 10)),
                 "sparse": (src.sparse_search(text, 10), dst.sparse_search(text, 10))}
        for mode, (from_source, from_copy) in pairs.items():
            want, got = _key(src, from_source), _key(dst, from_copy)
            identical[mode] += want == got
            overlap[mode].append(len(set(want) & set(got)) / max(len(want), 1))
    report.queries = len(sample)
    report.identical_top10 = identical
    report.top10_overlap = {m: round(float(np.mean(v)), 4) if v else 1.0 for m, v in overlap.items()}
    if report.top10_overlap.get("sparse", 1.0) < 1.0:
        report.problems.append(f"sparse top-10 differs on {len(sample) - identical['sparse']} of {len(sample)} "
                               "queries")
