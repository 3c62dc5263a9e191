"""Ingestor: walk, hash, parse, chunk, embed and store files incrementally, with progress and per-file errors."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.chunk import chunker_name_for, make_chunker
from ragtune.chunk.base import Chunker
from ragtune.dates import document_date
from ragtune.embed import Embedder
from ragtune.errors import ParseError
from ragtune.guard.acl import FolderRules, parse_groups
from ragtune.guard.injection import InjectionScanner
from ragtune.guard.pii import pii_kinds, redact_document
from ragtune.parse import ParseOptions, parse, source_type_for, supported_extensions
from ragtune.settings import Settings
from ragtune.store.base import ChunkStore
from ragtune.store.local import DocumentRecord, DocumentUpdate, chunk_tokens
from ragtune.types import Chunk, Document, embedding_text

log = logging.getLogger(__name__)

# Embedding batches gathered across documents before one commit. The fp32 embedders sort each flush by token
# length, so the more a flush holds the less its batches pad: on SciFact (256-token chunks, batches of 64)
# 1,024 chunks per flush compute 3.8 % padding, 256 per flush 11.3 %, 64 23.6 % (int8 encodes one text at a
# time and pads nothing). An interrupted run loses at most one flush, about a minute of work.
FLUSH_BATCHES = 16


def document_id(uri: str) -> str:
    """Stable id of a document: a hash of its normalised path or URI."""
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]


def file_uri(path: Path) -> str:
    """The normalised form of a file path used as the document's URI."""
    return path.expanduser().resolve().as_posix()


@dataclass
class IngestReport:
    """What an ingest run did; ``ok`` is False when any file failed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files of a type no parser reads (not stored)
    empty: list[str] = field(default_factory=list)  # stored, but without text to index (0 chunks)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    #: Seconds the embedding/commit loop spent waiting for parsed files, embedding, and storing.
    stages: dict[str, float] = field(default_factory=lambda: {"wait": 0.0, "embed": 0.0, "store": 0.0})

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        counts = {name: len(getattr(self, name)) for name in
                  ("added", "updated", "unchanged", "duplicates", "deleted", "skipped", "empty", "failed")}
        return {
            **counts, "chunks": self.chunks, "seconds": round(self.seconds, 3), "ok": self.ok,
            "stages_s": {k: round(v, 3) for k, v in self.stages.items()},
            "failures": [{"source": s, "error": e} for s, e in self.failed],
            "skipped_files": list(self.skipped), "empty_files": list(self.empty),
        }


@dataclass
class Progress:
    """A progress event: files finished so far out of the total, chunks stored, and the current source."""

    files_done: int
    files_total: int
    chunks: int
    current: str = ""


@dataclass
class _Item:
    """A unit of work flowing from the parsing thread to the embedding/commit loop."""

    uri: str
    record: DocumentRecord
    is_new: bool
    document: Document | None = None
    chunks: list[Chunk] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    unchanged: bool = False


class Ingestor:
    """Incremental ingestion into a ChunkStore: unchanged files are skipped by content hash, changed files
    are replaced atomically, identical files are recorded once, and failures never touch stored data."""

    def __init__(
        self, store: ChunkStore, embedder: Embedder, settings: Settings, *, chunker: str | None = None,
        acl: Iterable[str] | str | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.chunker_name = chunker or settings.chunker
        chunker_name_for(self.chunker_name, "txt")  # validate the name eagerly
        self._counter = embedder.token_counter()
        # Chunks are embedded and tokenised the way the KB's existing chunks were (see types.embedding_text).
        self.context = store.chunk_context
        self._chunkers: dict[str, Chunker] = {}
        # Every parser option is a setting of the same name.
        self._parse_options = ParseOptions(**{f.name: getattr(settings, f.name) for f in fields(ParseOptions)})
        # Access groups: given for the whole run (--acl), else by the settings' folder rules, else kept as stored.
        self._acl = parse_groups(acl)
        self._rules = FolderRules.from_settings(settings.acl_rules)
        self._scanner = InjectionScanner(settings.injection_threshold) if settings.injection != "off" else None

    # ------------------------------------------------------------------ public

    def ingest(
        self, paths: Iterable[str | Path], *, sync: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> IngestReport:
        """Ingest files and directories (recursively). With ``sync``, documents under the given roots whose
        files are gone are deleted."""
        started = time.perf_counter()
        report = IngestReport()
        roots = [Path(p) for p in paths]
        files, missing = self.discover(roots, report)
        items = (self._read_file(uri, path) for uri, path in files)
        self._run(items, len(files), report, on_progress)
        if sync:
            report.deleted = self.sync(roots, {uri for uri, _ in files})
        # With --sync, a named file that is gone is the deletion the user asked for, not an error.
        for uri in missing:
            if uri not in report.deleted:
                report.failed.append((uri, "no such file or directory — check the path"))
        report.seconds = time.perf_counter() - started
        self.store.save_indexes()
        return report

    def ingest_documents(
        self, documents: Iterable[tuple[str, Document]], *, total: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> IngestReport:
        """Ingest already-parsed documents under the given URIs (data sets, APIs); same rules as files."""
        started = time.perf_counter()
        report = IngestReport()
        items = (self._from_document(uri, doc) for uri, doc in documents)
        self._run(items, total or 0, report, on_progress)
        report.seconds = time.perf_counter() - started
        self.store.save_indexes()
        return report

    # ------------------------------------------------------------------ discovery

    def discover(self, roots: list[Path], report: IngestReport) -> tuple[list[tuple[str, Path]], list[str]]:
        """The files to ingest under ``roots`` as (uri, path), and the URIs of roots that do not exist; files of
        unsupported types are listed in ``report.skipped``."""
        supported = set(supported_extensions())
        found: dict[str, Path] = {}
        missing: list[str] = []
        for root in roots:
            if root.is_dir():
                for path in sorted(root.rglob("*")):
                    rel = path.relative_to(root).parts
                    if any(part.startswith(".") for part in rel) or not path.is_file():
                        continue
                    if path.suffix.lower() not in supported:
                        report.skipped.append(file_uri(path))
                        continue
                    found.setdefault(file_uri(path), path)
            elif root.is_file():
                # An explicitly named file is attempted even with an unknown type, so the user hears why it failed.
                found.setdefault(file_uri(root), root)
            else:
                missing.append(file_uri(root))
        return list(found.items()), missing

    def sync(self, roots: list[Path], seen: set[str]) -> list[str]:
        """Delete the documents under ``roots`` whose URIs are not in ``seen``; returns their URIs."""
        prefixes = [file_uri(r).rstrip("/") + "/" for r in roots if r.is_dir()]
        exact = {file_uri(r) for r in roots if not r.is_dir()}
        gone = [
            rec for rec in self.store.documents()
            if rec.uri not in seen and (rec.uri in exact or any(rec.uri.startswith(p) for p in prefixes))
        ]
        self.store.delete([rec.id for rec in gone])
        return [rec.uri for rec in gone]

    # ------------------------------------------------------------------ producing work

    def _base_record(self, uri: str, content_hash: str, size: int) -> tuple[DocumentRecord, bool, bool]:
        doc_id = document_id(uri)
        existing = self.store.document(doc_id)
        unchanged = existing is not None and existing.content_hash == content_hash and existing.status != "failed"
        record = DocumentRecord(
            id=doc_id, uri=uri, source_type=source_type_for(uri), content_hash=content_hash, size=size,
            version=(existing.version + 1) if existing else 1,
        )
        return record, existing is None, unchanged

    def _read_file(self, uri: str, path: Path) -> _Item:
        try:
            size = path.stat().st_size
            if size > self.settings.max_file_bytes:
                raise ParseError(uri, f"file is {size:,} bytes, larger than max_file_bytes="
                                      f"{self.settings.max_file_bytes:,} — raise RAGTUNE_MAX_FILE_BYTES to ingest it")
            data = path.read_bytes()
        except OSError as exc:
            record, is_new, _ = self._base_record(uri, "", 0)
            return _Item(uri, record, is_new, error=f"cannot read file ({exc.strerror or exc}) — check permissions")
        except ParseError as exc:
            record, is_new, _ = self._base_record(uri, "", 0)
            return _Item(uri, record, is_new, error=exc.cause)
        record, is_new, unchanged = self._base_record(uri, hashlib.sha256(data).hexdigest(), len(data))
        if unchanged:
            return _Item(uri, record, is_new, unchanged=True)
        try:
            document = parse(data, filename=path.name, max_bytes=self.settings.max_file_bytes,
                             options=self._parse_options)
            document = document.model_copy(update={"source": uri})
        except ParseError as exc:
            return _Item(uri, record, is_new, error=exc.cause)
        except Exception as exc:  # a parser bug must fail one file, not the run
            log.exception("unexpected error parsing %s", uri)
            return _Item(uri, record, is_new, error=f"unexpected parser error: {exc!r} — please report it")
        return self._chunk(_Item(uri, record, is_new, document=document))

    def _from_document(self, uri: str, document: Document) -> _Item:
        content_hash = hashlib.sha256(document.text.encode("utf-8")).hexdigest()
        record, is_new, unchanged = self._base_record(uri, content_hash, len(document.text))
        record.source_type = document.source_type
        if unchanged:
            return _Item(uri, record, is_new, unchanged=True)
        return self._chunk(_Item(uri, record, is_new, document=document.model_copy(update={"source": uri})))

    def _chunk(self, item: _Item) -> _Item:
        doc = item.document
        assert doc is not None
        name = chunker_name_for(self.chunker_name, doc.source_type, doc)
        chunker = self._chunkers.get(name)
        if chunker is None:
            chunker = make_chunker(name, chunk_size=self.settings.chunk_size,
                                   chunk_overlap=self.settings.chunk_overlap, counter=self._counter,
                                   embedder=self.embedder)
            self._chunkers[name] = chunker
        if doc.created_at is None:
            # A chat log's "Time:" line or a date in the file name: the date questions about it can name.
            doc = doc.model_copy(update={"created_at": document_date(doc.text, doc.source)})
        if self.settings.pii == "redact":
            doc = redact_document(doc)
        item.record.source_type = doc.source_type
        item.record.title = doc.title
        item.record.metadata = {
            k: v for k, v in {"author": doc.author, "created_at": doc.created_at,
                              "last_modified": doc.last_modified, "language": doc.language, "chunker": name}.items()
            if v is not None or k == "created_at"  # a date looked for and not found is recorded as such
        }
        item.chunks = chunker.split(doc)
        for chunk in item.chunks:
            chunk.meta.document_title = doc.title
        self._guard(item)
        item.tokens = [chunk_tokens(c, self.context) for c in item.chunks]
        # Store extensions (the knowledge graph) do their per-chunk work here, beside parsing, not in the commit.
        for extension in getattr(self.store, "extensions", ()):  # only the embedded store has extensions
            item.extras[extension.name] = extension.prepare(item.chunks)
        return item

    def _groups_for(self, uri: str) -> list[str] | None:
        return self._acl if self._acl is not None else self._rules.groups_for(uri)

    def _guard(self, item: _Item) -> None:
        """Access groups, injection flags and personal-data kinds on each chunk, with their totals on the record."""
        groups = self._groups_for(item.uri)
        if groups is None:
            existing = self.store.document(item.record.id)
            groups = existing.metadata.get("acl") if existing is not None else None
        metadata = item.record.metadata
        if groups:
            metadata["acl"] = groups
        found_pii: set[str] = set()
        verdicts = self._scanner.scan_many([c.text for c in item.chunks]) if self._scanner is not None else []
        for n, chunk in enumerate(item.chunks):
            chunk.meta.acl = list(groups) if groups else None
            if verdicts and verdicts[n].flagged:
                chunk.meta.injection = verdicts[n].reason
            if self.settings.pii == "flag":
                chunk.meta.pii = pii_kinds(chunk.text) or None
                found_pii.update(chunk.meta.pii or ())
        flagged = sum(1 for v in verdicts if v.flagged)
        if flagged:
            metadata["injection_flagged"] = flagged
        if found_pii:
            metadata["pii"] = sorted(found_pii)

    def _update_unchanged(self, item: _Item) -> None:
        """An unchanged file: what changed about it without its content (access groups, a date never read) is set
        in place, from one read of its catalog record."""
        existing = self.store.document(item.record.id)
        if existing is not None:
            self._regroup(item, existing)
            self._redate(item, existing)

    def _redate(self, item: _Item, existing: DocumentRecord) -> None:
        """An unchanged document stored before ragtune read dates from a header or a file name: its date, set in
        place without re-embedding. Once: the catalog then records that the date was looked for, found or not."""
        if existing.status != "ok" or "created_at" in existing.metadata:
            return
        first = self.store.document_chunks(existing.id)[:1]
        found = document_date(first[0].text if first else "", item.uri)
        if found is None and not first:
            return  # no text to look in (a Ray worker's snapshot holds none): looked for again next time
        self.store.update_meta(existing.id, {"created_at": found})
        if found:
            log.info("%s: dated %s", item.uri, found)

    def _regroup(self, item: _Item, existing: DocumentRecord) -> None:
        """An unchanged file ingested with other access groups than it has: change them in place."""
        groups = self._groups_for(item.uri)
        if groups is not None and existing.metadata.get("acl") != groups:
            self.store.update_meta(item.record.id, {"acl": groups})
            log.info("%s: access groups set to %s", item.uri, ", ".join(groups))

    # ------------------------------------------------------------------ consuming work

    def _run(
        self, items: Iterator[_Item], total: int, report: IngestReport,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        work: queue.Queue[_Item | BaseException | None] = queue.Queue(maxsize=64)
        stop = threading.Event()

        def produce() -> None:
            # Parsing and chunking overlap with embedding: torch releases the GIL while it computes.
            try:
                for item in items:
                    while not stop.is_set():
                        try:
                            work.put(item, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                work.put(None)
            except BaseException as exc:  # surfaced in the consumer
                work.put(exc)

        producer = threading.Thread(target=produce, name="ragtune-parse", daemon=True)
        producer.start()
        pending: list[_Item] = []
        pending_hashes: dict[str, str] = {}
        changing: set[str] = set()
        done = 0
        try:
            while True:
                t = time.perf_counter()
                item = work.get()
                report.stages["wait"] += time.perf_counter() - t
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                done += 1
                if item.unchanged:
                    self._update_unchanged(item)
                    report.unchanged.append(item.uri)
                else:
                    self._classify(item, pending_hashes, changing)
                    pending.append(item)
                    if sum(len(i.chunks) for i in pending) >= FLUSH_BATCHES * self.settings.embed_batch_size:
                        self._flush(pending, report)
                        pending, pending_hashes, changing = [], {}, set()
                if on_progress:
                    on_progress(Progress(done, max(total, done), report.chunks, item.uri))
            self._flush(pending, report)
            if on_progress:
                on_progress(Progress(done, max(total, done), report.chunks, ""))
        finally:
            stop.set()
            producer.join(timeout=5)

    def _classify(self, item: _Item, pending_hashes: dict[str, str], changing: set[str]) -> None:
        """Mark an item as a duplicate when identical content is stored (or about to be) under another id."""
        if item.error is not None or item.record.content_hash is None:
            return
        digest = item.record.content_hash
        original_id = pending_hashes.get(digest)
        if original_id is None:
            original = self.store.find_by_hash(digest, exclude=item.record.id)
            # A document whose content changes in this batch no longer holds its old content.
            if original is not None and original.id not in changing:
                original_id = original.id
        if original_id is not None and original_id != item.record.id:
            item.record.status = "duplicate"
            item.record.duplicate_of = original_id
            item.chunks, item.tokens = [], []
            return
        pending_hashes[digest] = item.record.id
        changing.add(item.record.id)

    def _flush(self, pending: list[_Item], report: IngestReport) -> None:
        if not pending:
            return
        embeddable = [i for i in pending if i.error is None and i.record.status == "ok" and i.chunks]
        texts = [embedding_text(c.text, c.meta, self.context) for i in embeddable for c in i.chunks]
        t = time.perf_counter()
        vectors = self.embedder.encode_documents(texts) if texts else np.zeros((0, self.embedder.dim), np.float32)
        report.stages["embed"] += time.perf_counter() - t
        t = time.perf_counter()
        updates: list[DocumentUpdate] = []
        offset = 0
        for item in pending:
            if item.error is not None:
                item.record.status = "failed"
                item.record.error = item.error
                updates.append(DocumentUpdate(item.record))
                continue
            n = len(item.chunks) if item in embeddable else 0
            updates.append(DocumentUpdate(item.record, item.chunks, vectors[offset : offset + n], item.tokens,
                                          item.extras))
            offset += n
        self.store.apply(updates)
        report.stages["store"] += time.perf_counter() - t
        for item in pending:
            if item.error is not None:
                report.failed.append((item.uri, item.error))
            elif item.record.status == "duplicate":
                report.duplicates.append(item.uri)
            elif not item.chunks:
                report.empty.append(item.uri)
            elif item.is_new:
                report.added.append(item.uri)
            else:
                report.updated.append(item.uri)
            report.chunks += len(item.chunks) if item.error is None else 0
