"""What the conformance suite shares: the backends it runs against (each on a real engine) and the corpus it stores."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engines import unique_name

from ragtune.settings import load_settings
from ragtune.store.base import ChunkStore
from ragtune.store.factory import StoreLocation, open_store
from ragtune.store.local import DocumentRecord, DocumentUpdate
from ragtune.types import Chunk, ChunkMeta

BACKENDS = ("local", "postgres", "milvus")
DIM = 8
EMBEDDER = "conformance-embedder"
WORDS = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma", "omega", "river",
    "mountain", "forest", "harbour", "invoice", "refund", "contract", "warranty", "clause", "tenant", "landlord",
    "deposit",
]
CHINESE = ["年假 制度 规定 员工 每年 享有 带薪 休假", "报销 流程 需要 发票 和 经理 审批"]
#: In every chunk, so a sparse search for it returns the whole corpus (what a filter then narrows).
COMMON = "common"


def location(kind: str, request: pytest.FixtureRequest, name: str) -> StoreLocation:
    if kind == "local":
        return StoreLocation("local", "local", name)
    if kind == "postgres":
        return StoreLocation("postgres", request.getfixturevalue("postgres_url"), name)
    if kind == "milvus":
        return StoreLocation("milvus", request.getfixturevalue("milvus_url"), name)
    if kind == "milvus-lite":
        return StoreLocation("milvus", request.getfixturevalue("milvus_lite_url"), name)
    raise ValueError(kind)


StoreMaker = Callable[..., ChunkStore]


def store_maker(kind: str, request: pytest.FixtureRequest, root: Path) -> tuple[StoreMaker, list[ChunkStore]]:
    """A function opening (by default creating) a KB of this backend under ``root``, and the stores it opened."""
    opened: list[ChunkStore] = []

    def make(name: str | None = None, *, dim: int = DIM, create: bool = True, **settings: Any) -> ChunkStore:
        name = name or unique_name()
        where = location(kind, request, name)
        store = open_store(root / name, where, load_settings(root / name, **settings), embedder_name=EMBEDDER,
                           dim=dim, create=create)
        opened.append(store)
        return store

    return make, opened


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def document(i: int, texts: list[str], *, version: int = 1, rng: np.random.Generator | None = None,
             content_hash: str | None = None, **meta: Any) -> DocumentUpdate:
    """One document update with ``texts`` as chunks, random unit vectors and the given chunk metadata."""
    rng = rng or np.random.default_rng(i * 1000 + version)
    uri = f"file:///corpus/doc{i:03d}.md"
    record = DocumentRecord(id=f"doc{i:03d}", uri=uri, source_type=meta.get("source_type", "md"),
                            content_hash=content_hash or f"hash{i}-{version}", size=sum(map(len, texts)),
                            version=version, title=f"Document {i}")
    chunks = [Chunk(text=text, start=0, end=len(text), meta=ChunkMeta(source=uri, **meta)) for text in texts]
    return DocumentUpdate(record, chunks, unit(rng, len(texts)))


def corpus(n: int = 24, seed: int = 3) -> list[DocumentUpdate]:
    """Documents with varied metadata (missing values, lists, booleans, dates, Chinese) and random vectors."""
    rng = random.Random(seed)
    updates = []
    for i in range(n):
        texts = []
        for _ in range(rng.choice([1, 2, 3])):
            words = rng.sample(WORDS, rng.randint(4, 9))
            texts.append(" ".join([*words, COMMON]))
        if i % 7 == 3:
            texts.append(f"{rng.choice(CHINESE)} {COMMON}")
        meta: dict[str, Any] = {
            "source_type": rng.choice(["pdf", "pdf", "docx", "md", "html"]),
            "page_number": rng.choice([None, 1, 2, 3, 5, 10]),
            "author": rng.choice([None, "Ann", "Bob", "ann", "Zoë", "Ann Lee", 'O"Brien \\ x']),
            "tags": rng.choice([[], ["x"], ["x", "y"], ["legal"], ["y", "legal"]]),
            "heading_path": rng.choice([[], ["Intro"], ["Intro", "Scope"], ["Terms", "Scope", "Fees"]]),
            "is_ocr": rng.random() < 0.3,
            "word_count": rng.choice([0, 12, 99, 150, 400]),
            "created_at": rng.choice([None, "2023-05-01", "2024-01-01", "2024-07-15T10:00:00", "2025-02-02"]),
            "section_title": rng.choice([None, "Scope of work", "Introduction", "SCOPE", "", "50% off_now"]),
            "language": rng.choice(["en", "en", "zh", None]),
        }
        updates.append(document(i, texts, **meta))
    return updates
