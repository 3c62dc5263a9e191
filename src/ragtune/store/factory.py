"""Which store a knowledge base lives in: the ``store`` setting (``local``, ``postgresql://…``, ``milvus://…`` or
a ``package.module:Class`` plug-in), recorded in the KB folder so it reopens the same way."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ragtune.errors import ConfigError, StoreError
from ragtune.files import atomic_write_json
from ragtune.store.local import DB_FILE, LocalStore
from ragtune.store.postgres import is_postgres_url, redact

if TYPE_CHECKING:
    from ragtune.settings import Settings
    from ragtune.store.base import ChunkStore

#: The file in a KB folder that says where the KB's data lives when it is not the folder itself.
POINTER_FILE = "store.json"
KINDS = ("local", "postgres", "milvus", "plugin")


@dataclass(frozen=True)
class StoreLocation:
    """Where one knowledge base's data lives: the kind of store, its URL (or plug-in path) and the KB's name in it."""

    kind: str
    url: str
    name: str

    def describe(self) -> str:
        return "the KB folder" if self.kind == "local" else f"{redact(self.url)} as {self.name!r}"


def parse_store(setting: str, name: str) -> StoreLocation:
    """The location a ``store`` setting names for the knowledge base ``name`` (its folder name by default).

    A URL may carry the name: ``postgresql://host/db?kb=handbook``.
    """
    setting = setting.strip()
    if setting in ("", "local"):
        return StoreLocation("local", "local", name)
    if is_postgres_url(setting):
        return StoreLocation("postgres", _without_kb(setting), _kb_param(setting) or name)
    if setting.startswith("milvus://"):
        return StoreLocation("milvus", _without_kb(setting), _kb_param(setting) or name)
    if "://" not in setting and (":" in setting or "." in setting) and not setting.startswith((".", "/")):
        return StoreLocation("plugin", setting, name)
    raise ConfigError(
        f"store = {setting!r} is not a store — use 'local', 'postgresql://user@host/db', 'milvus://host:19530' or "
        "'package.module:Class' (a ChunkStore plug-in)"
    )


def _kb_param(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("kb")
    return values[0] if values else None


def _without_kb(url: str) -> str:
    # By hand: urlunsplit would turn "milvus:///path" (no host: Milvus Lite) into "milvus:/path".
    base, sep, query = url.partition("?")
    kept = "&".join(p for p in query.split("&") if p and not p.startswith("kb="))
    return f"{base}?{kept}" if sep and kept else base


def read_pointer(directory: Path) -> StoreLocation | None:
    path = Path(directory) / POINTER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StoreLocation(str(data["kind"]), str(data["store"]), str(data["name"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}) — restore it, or delete the folder and open the KB again "
                         "with --store") from None


def write_pointer(directory: Path, location: StoreLocation) -> None:
    """Record in the KB folder where its data lives (the URL as given: keep passwords in PGPASSWORD or .pgpass)."""
    atomic_write_json(Path(directory) / POINTER_FILE,
                      {"kind": location.kind, "store": location.url, "name": location.name})


def locate(directory: Path, settings: Settings) -> StoreLocation:
    """Where the KB at ``directory`` lives (or, when it does not exist yet, will live).

    The folder decides first (its ``ragtune.db`` or ``store.json``); the ``store`` setting applies to a folder
    that has neither. Asking explicitly for another store than the one the folder records is an error.
    """
    directory = Path(directory)
    name = directory.resolve().name
    wanted = parse_store(settings.store, name)
    # A Milvus KB keeps its catalog in the folder's ragtune.db too: the pointer decides first.
    recorded = read_pointer(directory)
    if recorded is None and (directory / DB_FILE).exists():
        recorded = StoreLocation("local", "local", name)
    if recorded is None:
        return wanted
    if "store" in settings.model_fields_set and (wanted.kind, wanted.url) != (recorded.kind, recorded.url):
        raise ConfigError(
            f"{directory} lives in {recorded.describe()}, not in {wanted.describe()} — drop the store setting, "
            f"or copy the KB with 'ragtune kb migrate --kb {directory} --to {redact(settings.store)}'"
        )
    return recorded


def stored_embedder(directory: Path, location: StoreLocation) -> tuple[str, int] | None:
    """The embedder (name, dimension) recorded by an existing KB, without opening its indexes."""
    if location.kind == "local":
        return LocalStore.stored_embedder(directory)
    if location.kind == "postgres":
        from ragtune.store import pgvector

        return pgvector.stored_embedder(location.url, location.name)
    if location.kind == "milvus":  # the catalog lives in the folder
        return LocalStore.stored_embedder(directory)
    cls = _plugin(location.url)
    probe = getattr(cls, "stored_embedder", None)
    return probe(directory, location.name) if probe is not None else None


def open_store(
    directory: Path, location: StoreLocation, settings: Settings, *, embedder_name: str, dim: int, create: bool,
    checkpoint: str = "",
) -> ChunkStore:
    """Open (or with ``create`` make) the KB's store; ``settings`` supply the index parameters."""
    s = settings
    if location.kind == "local":
        return LocalStore(
            directory, embedder_name=embedder_name, dim=dim, create=create, bm25_k1=s.bm25_k1, bm25_b=s.bm25_b,
            hnsw_m=s.hnsw_m, hnsw_ef_construction=s.hnsw_ef_construction, hnsw_ef_search=s.hnsw_ef_search,
            exact_search_below=s.exact_search_below, threads=s.num_threads or 1, checkpoint=checkpoint,
        )
    store: ChunkStore
    if location.kind == "postgres":
        from ragtune.store.pgvector import PostgresStore

        store = PostgresStore(
            location.url, location.name, directory, embedder_name=embedder_name, dim=dim, create=create,
            bm25_k1=s.bm25_k1, bm25_b=s.bm25_b, hnsw_m=s.hnsw_m, hnsw_ef_construction=s.hnsw_ef_construction,
            hnsw_ef_search=s.hnsw_ef_search, exact_search_below=s.exact_search_below, checkpoint=checkpoint,
        )
    elif location.kind == "milvus":
        from ragtune.store.milvus import MilvusStore

        store = MilvusStore(location.url, location.name, directory, embedder_name=embedder_name, dim=dim,
                            create=create, settings=s, checkpoint=checkpoint)
    else:
        cls = _plugin(location.url)
        store = cls(directory=directory, name=location.name, embedder_name=embedder_name, dim=dim, create=create,
                    settings=s, checkpoint=checkpoint)
    if location.kind != "local" and read_pointer(directory) is None:
        write_pointer(directory, location)
    return store


def _plugin(path: str) -> Any:
    """The class a ``package.module:Class`` (or ``package.module.Class``) plug-in path names."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"store plug-in {path!r} cannot be loaded ({exc}) — give 'package.module:Class' of an "
                          "importable class implementing ragtune.store.base.ChunkStore") from None
