"""The knowledge bases a server serves: a root folder of them (created and deleted through the API) or fixed paths."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragtune.embed import Embedder
from ragtune.feedback import FeedbackStore
from ragtune.kb import KnowledgeBase
from ragtune.llm.base import LLM
from ragtune.server.errors import ApiError
from ragtune.server.uploads import UploadArea
from ragtune.settings import Settings
from ragtune.store.factory import POINTER_FILE, parse_store, read_pointer, stored_embedder, write_pointer
from ragtune.store.local import DB_FILE

log = logging.getLogger(__name__)

# Names become folder names and model ids ("kb:NAME"): letters, digits, '_', '-', '.', no leading dot.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ApiError(400, f"invalid knowledge base name {name!r} — use up to 64 letters, digits, '_', '-' or '.'",
                       "invalid_request_error", "invalid_kb_name")
    return name


class KnowledgeBases:
    """Opens each knowledge base once and shares it between requests and the ingestion worker."""

    def __init__(
        self, *, root: Path | None = None, paths: Sequence[Path] = (), settings: Settings,
        embedder: Embedder | None = None, llm: LLM | None = None, overrides: dict[str, Any] | None = None,
    ) -> None:
        self.root = root.resolve() if root is not None else None
        self.fixed = {check_name(Path(p).resolve().name): Path(p).resolve() for p in paths}
        self.settings = settings
        self.embedder = embedder
        self.llm = llm
        self.overrides = overrides or {}
        self._open: dict[str, KnowledgeBase] = {}
        # Replaced by a reload while requests may still hold them: closed once they have had time to finish.
        self._retired: list[tuple[float, KnowledgeBase]] = []
        self._feedback: dict[str, FeedbackStore] = {}
        self._lock = threading.RLock()
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)

    def names(self) -> list[str]:
        found = {name for name, path in self.fixed.items() if _is_kb(path)}
        if self.root is not None:
            found.update(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name) and _is_kb(p))
            # On a shared store, the KBs other servers created count too.
            found.update(name for name in self._shared_names() if _NAME.fullmatch(name))
        return sorted(found)

    def _shared_names(self) -> list[str]:
        if parse_store(self.settings.store, "").kind != "postgres":
            return []
        from ragtune.store.pgvector import list_knowledge_bases

        return list_knowledge_bases(parse_store(self.settings.store, "").url)

    def path(self, name: str) -> Path:
        check_name(name)
        if name in self.fixed:
            return self.fixed[name]
        if self.root is not None:
            return self.root / name
        raise self._missing(name)

    def exists(self, name: str) -> bool:
        return _NAME.fullmatch(name) is not None and name in self.names()

    def get(self, name: str) -> KnowledgeBase:
        """The open knowledge base; opened again when what serves it changed on disk (a promotion or rollback of
        'ragtune loop', or 'kb reembed', by this or another process), so new requests use the new champion
        without a restart while requests in flight finish with the old one."""
        with self._lock:
            kb = self._open.get(name)
            if kb is not None:
                if kb.serving_stamp() == kb.opened_stamp:
                    return kb
                log.info("%s: what serves it changed (a promotion or rollback); opening it again", name)
                self._open.pop(name)
                self._retire(kb)
            if not self.exists(name):
                raise self._missing(name)
            path = self.path(name)
            if not _is_kb(path):  # created by another server on the shared store: this server's folder for it
                write_pointer(path, parse_store(self.settings.store, name))
            kb = KnowledgeBase.open(path, embedder=self._embedder_for(name), **self.overrides)
            if self.llm is not None:
                kb.llm = self.llm
            self._open[name] = kb
            return kb

    def open_for_job(self, name: str) -> KnowledgeBase:
        """A knowledge base object of its own for a long background job (a loop run), opened as requests open
        it; the caller closes it. What the job changes on disk reaches requests through :meth:`get`."""
        if not self.exists(name):
            raise self._missing(name)
        kb = KnowledgeBase.open(self.path(name), embedder=self._embedder_for(name), **self.overrides)
        if self.llm is not None:
            kb.llm = self.llm
        return kb

    def _embedder_for(self, name: str) -> Embedder | None:
        """The server's embedder when the KB's vectors were made with it; else the KB loads its own."""
        path = self.path(name)
        location = read_pointer(path) or parse_store("local", name)  # the folder says where the KB lives
        stored = stored_embedder(path, location)
        if self.embedder is not None and stored is not None and stored[0] != self.embedder.name:
            return None
        return self.embedder

    def _retire(self, kb: KnowledgeBase, grace_s: float = 300.0) -> None:
        now = time.monotonic()
        self._retired.append((now, kb))
        for when, old in [r for r in self._retired if now - r[0] > grace_s]:
            self._retired.remove((when, old))
            try:
                old.close()
            except Exception:  # a store another thread still reads; it is closed at exit
                log.exception("closing a replaced knowledge base failed")

    def feedback(self, name: str) -> FeedbackStore:
        with self._lock:
            if name not in self._feedback:
                self.get(name)
                self._feedback[name] = FeedbackStore(self.path(name))
            return self._feedback[name]

    def uploads(self, name: str) -> UploadArea:
        return UploadArea(self.path(name), max_bytes=self.settings.max_upload_bytes,
                          max_archive_bytes=self.settings.max_archive_bytes)

    def create(self, name: str, embedder: str | None = None) -> KnowledgeBase:
        check_name(name)
        with self._lock:
            if self.root is None:
                raise ApiError(409, "this server serves fixed knowledge bases (--kb); start it with --kb-root to "
                               "create them through the API", "invalid_request_error", "kb_root_required")
            if self.exists(name):
                raise ApiError(409, f"knowledge base {name!r} already exists", "invalid_request_error", "kb_exists")
            chosen: Any = embedder or self.embedder
            if embedder and self.embedder is not None and embedder == self.embedder.name:
                chosen = self.embedder
            kb = KnowledgeBase.open(self.root / name, create=True, embedder=chosen,
                                    **{"store": self.settings.store, **self.overrides})
            if self.llm is not None:
                kb.llm = self.llm
            self._open[name] = kb
            return kb

    def delete(self, name: str) -> None:
        with self._lock:
            if not self.exists(name):
                raise self._missing(name)
            if name in self.fixed:
                raise ApiError(409, f"{name!r} was given with --kb; delete its folder yourself",
                               "invalid_request_error", "kb_fixed")
            self._close(name)
            location = read_pointer(self.path(name))
            if location is not None and location.kind == "postgres":
                from ragtune.store.pgvector import drop_knowledge_base

                drop_knowledge_base(location.url, location.name)
            elif location is not None and location.kind == "milvus":
                from ragtune.store.milvus import drop_collection

                drop_collection(location.url, location.name)
            shutil.rmtree(self.path(name))

    def _close(self, name: str) -> None:
        store = self._feedback.pop(name, None)
        if store is not None:
            store.close()
        kb = self._open.pop(name, None)
        if kb is not None:
            kb.close()

    def close(self) -> None:
        with self._lock:
            for name in list(self._open):
                try:
                    self._close(name)
                except Exception:  # closing the others matters more
                    log.exception("closing knowledge base %s failed", name)
            for _, old in self._retired:
                try:
                    old.close()
                except Exception:
                    log.exception("closing a replaced knowledge base failed")
            self._retired.clear()

    @staticmethod
    def _missing(name: str) -> ApiError:
        return ApiError(404, f"no knowledge base named {name!r} — list them with GET /v1/kbs",
                        "invalid_request_error", "kb_not_found")


def _is_kb(path: Path) -> bool:
    """A folder holding a knowledge base: its own database, or the pointer to where its data lives."""
    return (path / DB_FILE).exists() or (path / POINTER_FILE).exists()
