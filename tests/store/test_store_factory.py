"""The store factory: `store` settings to locations, the folder pointer, refusals, and a plug-in by dotted path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragtune.errors import ConfigError, StoreError
from ragtune.settings import Settings, load_settings
from ragtune.store.factory import POINTER_FILE, StoreLocation, locate, parse_store, read_pointer, write_pointer
from ragtune.store.local import LocalStore


class TestParseStore:
    @pytest.mark.unit
    @pytest.mark.parametrize(("setting", "expected"), [
        ("local", StoreLocation("local", "local", "kb")),
        ("", StoreLocation("local", "local", "kb")),
        ("postgresql://u@h:5432/db", StoreLocation("postgres", "postgresql://u@h:5432/db", "kb")),
        ("postgres://u@h/db?kb=handbook&sslmode=require",
         StoreLocation("postgres", "postgres://u@h/db?sslmode=require", "handbook")),
        ("milvus://h:19530", StoreLocation("milvus", "milvus://h:19530", "kb")),
        ("milvus:///data/m.db?sparse=milvus", StoreLocation("milvus", "milvus:///data/m.db?sparse=milvus", "kb")),
        ("mypackage.stores:QdrantStore", StoreLocation("plugin", "mypackage.stores:QdrantStore", "kb")),
        ("mypackage.stores.QdrantStore", StoreLocation("plugin", "mypackage.stores.QdrantStore", "kb")),
    ])
    def test_settings(self, setting: str, expected: StoreLocation) -> None:
        assert parse_store(setting, "kb") == expected

    @pytest.mark.unit
    @pytest.mark.parametrize("setting", ["qdrant://h:6333", "./some/folder", "/abs/path", "sqlite"])
    def test_unknown_stores_say_what_is_accepted(self, setting: str) -> None:
        with pytest.raises(ConfigError, match="postgresql://user@host/db"):
            parse_store(setting, "kb")

    @pytest.mark.unit
    def test_describe_hides_the_password(self) -> None:
        assert parse_store("postgresql://u:secret@h/db", "kb").describe() == "postgresql://u:***@h/db as 'kb'"


@pytest.mark.unit
def test_the_folder_decides_and_an_explicit_other_store_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "team"
    assert locate(folder, load_settings(folder)) == StoreLocation("local", "local", "team")
    assert locate(folder, load_settings(folder, store="postgresql://h/db")).kind == "postgres"
    write_pointer(folder, StoreLocation("postgres", "postgresql://h/db", "team-kb"))
    assert json.loads((folder / POINTER_FILE).read_text())["name"] == "team-kb"
    assert locate(folder, Settings()) == read_pointer(folder)
    assert locate(folder, load_settings(folder, store="postgresql://h/db")).name == "team-kb"
    with pytest.raises(ConfigError, match="kb migrate"):
        locate(folder, load_settings(folder, store="local"))
    (folder / POINTER_FILE).write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        locate(folder, Settings())


class WrappedStore(LocalStore):
    """A plug-in: any class taking these keyword arguments and keeping the ChunkStore contract."""

    opened: list[str] = []

    def __init__(self, *, directory: Path, name: str, embedder_name: str, dim: int, create: bool,
                 settings: Settings, checkpoint: str = "") -> None:
        WrappedStore.opened.append(name)
        super().__init__(directory, embedder_name=embedder_name, dim=dim, create=create, checkpoint=checkpoint)

    @staticmethod
    def stored_embedder(directory: Path, name: str) -> Any:
        return LocalStore.stored_embedder(directory)


@pytest.mark.integration
def test_a_plug_in_named_by_dotted_path_serves_a_knowledge_base(tmp_path: Path, embedder, docs_dir: Path) -> None:
    from ragtune.kb import KnowledgeBase

    plugin = "test_store_factory:WrappedStore"
    with KnowledgeBase.open(tmp_path / "plug", create=True, embedder=embedder, store=plugin) as kb:
        assert kb.ingest(docs_dir).ok
        assert kb.search("rotate API keys", k=1)[0].source.endswith("security.md")
    assert read_pointer(tmp_path / "plug") == StoreLocation("plugin", "test_store_factory:WrappedStore", "plug")
    with KnowledgeBase.open(tmp_path / "plug", embedder=embedder) as kb:  # reopened through the pointer
        assert kb.stats()["documents"] == 5
    assert WrappedStore.opened[-2:] == ["plug", "plug"]
    with pytest.raises(ConfigError, match="cannot be loaded"):
        KnowledgeBase.open(tmp_path / "other", create=True, embedder=embedder, store="no_such_module:Store")
