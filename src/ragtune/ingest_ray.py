"""Distributed ingestion on Ray: Ray Data actors read, parse, chunk and embed files; the driver writes to the store.

Each actor runs the ordinary ``Ingestor`` (same parsers, chunkers, embedding texts and batching) against a
snapshot of the catalog taken when the run starts, and hands back the document updates it would have stored. The
driver applies them in file order with the rules of a local ingest: unchanged files are skipped by hash, a file
whose content is already stored (or stored earlier in the run) becomes a duplicate, failures keep the last good
version, ``--sync`` deletes documents whose files are gone. Files are read by the workers, so on a multi-machine
cluster they must be on storage every node sees (the same path).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError
from ragtune.guard.acl import parse_groups
from ragtune.ingest import Ingestor, IngestReport, Progress, document_id
from ragtune.settings import Settings
from ragtune.store.base import ChunkStore
from ragtune.store.local import DocumentRecord, DocumentUpdate

log = logging.getLogger(__name__)

#: Files each actor takes at a time: enough for full embedding batches, few enough to spread the work.
FILES_PER_TASK = 16
_INSTALL_HINT = "install the 'ray' extra (pip install 'ragtune[ray]')"


@dataclass
class CatalogSnapshot:
    """What the workers need to know of the store: the stored records of the files being ingested, and which
    stored document holds each content (for duplicates). Taken once by the driver, shipped to every actor."""

    records: dict[str, DocumentRecord]
    by_hash: dict[str, str]
    #: Settings the KB records about how its chunks were made (e.g. the embedding context version).
    chunk_context: int = 0


class CaptureStore:
    """The store a worker's ``Ingestor`` writes to: it answers from the snapshot and keeps what would be written."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self.snapshot = snapshot
        self.chunk_context = snapshot.chunk_context
        self.updates: list[DocumentUpdate] = []
        #: Access groups to set on unchanged documents (``Ingestor`` regroups them in place).
        self.regroups: list[tuple[str, dict[str, Any]]] = []

    def document(self, doc_id: str) -> DocumentRecord | None:
        return self.snapshot.records.get(doc_id)

    def find_by_hash(self, content_hash: str, exclude: str | None = None) -> DocumentRecord | None:
        found = self.snapshot.by_hash.get(content_hash)
        return DocumentRecord(id=found, uri="") if found and found != exclude else None

    def apply(self, updates: Sequence[DocumentUpdate]) -> None:
        for update in updates:
            update.chunk_tokens()  # computed here, on the worker
        self.updates.extend(updates)

    def update_meta(self, document_id: str, values: dict[str, Any]) -> bool:
        self.regroups.append((document_id, values))
        return document_id in self.snapshot.records

    def document_chunks(self, document_id: str) -> list[Any]:
        """No chunk text in a worker's snapshot: an unchanged document is dated by its file name here, by its
        header at the next local ingest."""
        return []

    def save_indexes(self) -> None:
        """Nothing to save: the driver stores what was captured."""


@dataclass
class WorkerResult:
    """What one actor made of a batch of files."""

    updates: list[DocumentUpdate] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    regroups: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    seconds: float = 0.0
    worker: str = ""


class IngestWorker:
    """A Ray Data actor: loads the embedder once, then ingests batches of files into a ``CaptureStore``."""

    def __init__(self, settings: dict[str, Any], chunker: str | None, snapshot: Any,
                 acl: list[str] | None = None) -> None:
        import ray

        from ragtune.embed import load_embedder

        self.settings = Settings.model_validate(settings)
        self.chunker = chunker
        self.acl = acl
        self.snapshot = ray.get(snapshot) if isinstance(snapshot, ray.ObjectRef) else snapshot
        s = self.settings
        # The KB's model, backend and precision (its recorded ones: see KnowledgeBase.open), so vectors match.
        self.embedder = load_embedder(s.embedder, batch_size=s.embed_batch_size, num_threads=s.num_threads or 1,
                                      backend=s.embed_backend, precision=s.embed_precision, device=s.embed_device)
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        store = CaptureStore(self.snapshot)
        ingestor = Ingestor(store, self.embedder, self.settings, chunker=self.chunker,  # type: ignore[arg-type]
                            acl=self.acl)
        paths = [Path(p) for p in batch["path"]]
        report = ingestor.ingest(paths)
        result = WorkerResult(store.updates, report.unchanged, store.regroups, time.perf_counter() - started,
                              self.name)
        return {"result": np.array([pickle.dumps(result)], dtype=object)}


def ray_ingest(
    store: ChunkStore, settings: Settings, paths: Iterable[str | Path], *, address: str = "local", workers: int = 2,
    sync: bool = False, chunker: str | None = None, on_progress: Callable[[Progress], None] | None = None,
    files_per_task: int = FILES_PER_TASK, acl: str | Iterable[str] | None = None,
) -> tuple[IngestReport, dict[str, dict[str, float]]]:
    """Ingest files on a Ray cluster (``address``: 'local' starts one with ``workers`` CPUs, 'auto' joins a
    running one, 'ray://host:10001' connects to a remote one) into ``store``; ``acl``: the access groups of every
    file, as for a local ingest. Returns the report a local ingest would give, and per worker the files, chunks,
    busy seconds and chunks per second it did."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(f"--ray needs Ray — {_INSTALL_HINT}") from None
    if workers <= 0:
        raise ConfigError("workers must be greater than 0.")
    started = time.perf_counter()
    report = IngestReport()
    roots = [Path(p) for p in paths]
    groups = parse_groups(acl)
    planner = Ingestor(store, _NoEmbedder(), settings, chunker=chunker, acl=groups)  # type: ignore[arg-type]
    files, missing = planner.discover(roots, report)
    snapshot = _snapshot(store, [uri for uri, _ in files])
    _start_ray(ray, address, workers)
    # Workers ingest with the KB's settings, but the files' paths are the driver's: absolute URIs.
    worker_settings = settings.model_dump(mode="json")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # duplicates are decided in file order, as locally
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"uri": uri, "path": str(path)} for uri, path in files],
                                  override_num_blocks=max(1, min(len(files), workers * 4)))
    results = dataset.map_batches(
        IngestWorker, batch_size=files_per_task, concurrency=workers, num_cpus=1,
        fn_constructor_kwargs={"settings": worker_settings, "chunker": chunker, "snapshot": ray.put(snapshot),
                               "acl": groups},
    )
    applier = _Applier(store, snapshot, report)
    per_worker: dict[str, dict[str, float]] = {}
    done = 0
    for batch in results.iter_batches(batch_size=1, batch_format="numpy"):
        result: WorkerResult = pickle.loads(batch["result"][0])
        applier.apply(result)
        stats = per_worker.setdefault(result.worker, {"files": 0, "chunks": 0, "seconds": 0.0})
        stats["files"] += len(result.updates) + len(result.unchanged)
        stats["chunks"] += sum(len(u.chunks) for u in result.updates)
        stats["seconds"] += result.seconds
        done += len(result.updates) + len(result.unchanged)
        if on_progress:
            on_progress(Progress(done, len(files), report.chunks, ""))
    if applier.stale:
        # A file matched content that changed earlier in this run: ingest it again here, now the store is current.
        log.info("re-ingesting %d file(s) whose duplicate check was overtaken by the run", len(applier.stale))
        again = Ingestor(store, _load_embedder(settings), settings, chunker=chunker, acl=groups).ingest(applier.stale)
        _merge(report, again)
    if sync:
        report.deleted = planner.sync(roots, {uri for uri, _ in files})
    for uri in missing:
        if uri not in report.deleted:
            report.failed.append((uri, "no such file or directory — check the path"))
    store.save_indexes()
    report.seconds = time.perf_counter() - started
    return report, {name: {**v, "chunks_per_s": round(v["chunks"] / v["seconds"], 2) if v["seconds"] else 0.0}
                    for name, v in per_worker.items()}


class _Applier:
    """Stores worker output in file order with a local ingest's duplicate rules (see ``Ingestor._classify``)."""

    def __init__(self, store: ChunkStore, snapshot: CatalogSnapshot, report: IngestReport) -> None:
        self.store = store
        self.snapshot = snapshot
        self.report = report
        self.stale: list[Path] = []

    def apply(self, result: WorkerResult) -> None:
        report = self.report
        report.unchanged.extend(result.unchanged)
        for doc_id, values in result.regroups:
            self.store.update_meta(doc_id, values)
        pending: dict[str, str] = {}
        changing: set[str] = set()
        updates = []
        for update in result.updates:
            rec = update.record
            if rec.status == "duplicate" and rec.duplicate_of not in changing and not self._still_original(rec):
                self.stale.append(Path(rec.uri))
                continue
            if rec.status == "ok" and rec.content_hash:
                original = pending.get(rec.content_hash)
                if original is None:
                    found = self.store.find_by_hash(rec.content_hash, exclude=rec.id)
                    original = found.id if found is not None and found.id not in changing else None
                if original is not None and original != rec.id:
                    rec.status, rec.duplicate_of = "duplicate", original
                    update = DocumentUpdate(rec)
                else:
                    pending[rec.content_hash] = rec.id
                    changing.add(rec.id)
            updates.append(update)
        self.store.apply(updates)
        for update in updates:
            rec = update.record
            if rec.status == "failed":
                report.failed.append((rec.uri, rec.error or "failed"))
            elif rec.status == "duplicate":
                report.duplicates.append(rec.uri)
            elif rec.id in self.snapshot.records:
                report.updated.append(rec.uri)
            else:
                report.added.append(rec.uri)
            report.chunks += len(update.chunks) if rec.status != "failed" else 0

    def _still_original(self, rec: DocumentRecord) -> bool:
        original = self.store.document(rec.duplicate_of or "")
        return original is not None and original.status == "ok" and original.content_hash == rec.content_hash


def _snapshot(store: ChunkStore, uris: list[str]) -> CatalogSnapshot:
    wanted = {document_id(uri) for uri in uris}
    records, by_hash = {}, {}
    for record in store.documents():
        if record.id in wanted:
            records[record.id] = record
        if record.status == "ok" and record.content_hash and record.content_hash not in by_hash:
            by_hash[record.content_hash] = record.id
    return CatalogSnapshot(records, by_hash, int(getattr(store, "chunk_context", 0) or 0))


def _start_ray(ray: Any, address: str, workers: int) -> None:
    if ray.is_initialized():
        return
    if address == "local":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a cluster of this process only, on loopback
    try:
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:
        raise ConfigError(f"cannot start or reach Ray at {address!r} ({exc}) — use --ray local, or the address "
                          "of a running cluster (ray start --head prints it)") from None


def _load_embedder(settings: Settings) -> Any:
    from ragtune.embed import load_embedder

    return load_embedder(settings.embedder, batch_size=settings.embed_batch_size, num_threads=settings.num_threads,
                         backend=settings.embed_backend, precision=settings.embed_precision,
                         device=settings.embed_device)


def _merge(report: IngestReport, other: IngestReport) -> None:
    for name in ("added", "updated", "duplicates", "failed"):
        getattr(report, name).extend(getattr(other, name))
    report.chunks += other.chunks


class _NoEmbedder:
    """The driver plans and stores; it never embeds (the workers do)."""

    name = "none"
    dim = 0

    def token_counter(self) -> Any:
        return None
