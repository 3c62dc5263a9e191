"""Ingestion on a local two-worker Ray cluster gives exactly the documents, chunks and vectors of a local ingest,
with the same rules for unchanged, changed, duplicate, failed and deleted files and access groups."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ragtune.kb import KnowledgeBase

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="run 'make test' (it installs the ray extra)")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def contents(kb: KnowledgeBase) -> tuple[list[tuple], dict[str, tuple], dict[str, np.ndarray]]:
    store = kb.store
    documents = [(d.id, d.uri, d.status, d.duplicate_of, d.chunk_count, d.content_hash, d.version)
                 for d in store.documents()]
    chunks, vectors = {}, {}
    for update in store.export([d.id for d in store.documents()]):
        for chunk, vector, tokens in zip(update.chunks, update.vectors, update.tokens or [], strict=True):
            chunks[chunk.id] = (chunk.text, chunk.start, chunk.end, chunk.meta.model_dump(), tokens)
            vectors[chunk.id] = vector
    return documents, chunks, vectors


def assert_same(a: KnowledgeBase, b: KnowledgeBase) -> float:
    """Same documents and chunks; returns the largest difference between two vectors of the same chunk."""
    docs_a, chunks_a, vectors_a = contents(a)
    docs_b, chunks_b, vectors_b = contents(b)
    assert docs_a == docs_b
    assert chunks_a == chunks_b
    worst = max(float(np.abs(vectors_a[k] - vectors_b[k]).max()) for k in vectors_a)
    assert worst < 1e-5  # the same model on the same texts; only batch composition differs
    return worst


def test_a_ray_ingest_equals_a_local_one(tmp_path: Path, embedder, docs_dir: Path, ray_cluster: None) -> None:
    from ragtune.ingest_ray import ray_ingest

    for i in range(8):
        (docs_dir / f"note{i:02d}.md").write_text(f"# Note {i}\n\nThe widget number {i} has property {i * 7 % 13}. "
                                                  * 5)
    shutil.copy(docs_dir / "handbook" / "security.md", docs_dir / "zz-security-copy.md")
    (docs_dir / "broken.docx").write_bytes(b"not a zip file")
    with KnowledgeBase.open(tmp_path / "local", create=True, embedder=embedder) as local, \
            KnowledgeBase.open(tmp_path / "ray", create=True, embedder=embedder) as distributed:
        want = local.ingest(docs_dir)
        got, workers = ray_ingest(distributed.store, distributed.settings, [docs_dir], workers=2, files_per_task=4)
        timings = ("seconds", "stages_s", "failures")  # not compared: times differ run to run
        summary = {k: v for k, v in got.to_dict().items() if k not in timings}
        assert summary == {k: v for k, v in want.to_dict().items() if k not in timings}
        assert (len(got.added), len(got.duplicates), len(got.failed)) == (13, 1, 1)
        assert_same(local, distributed)
        assert len(workers) == 2 and all(w["files"] > 0 and w["chunks_per_s"] > 0 for w in workers.values())

        (docs_dir / "note03.md").write_text("# Note 3\n\nRewritten: the widget number 3 is retired.")
        (docs_dir / "note04.md").unlink()
        (docs_dir / "handbook" / "security.md").unlink()  # its copy inherits its chunks
        # With access groups: the changed file's chunks get them, the unchanged ones are regrouped in place.
        want = local.ingest(docs_dir, sync=True, acl="hr")
        got, _ = ray_ingest(distributed.store, distributed.settings, [docs_dir], workers=2, sync=True, acl="hr")
        assert (got.updated, sorted(got.deleted)) == (want.updated, sorted(want.deleted))
        assert len(got.unchanged) == len(want.unchanged) == 11 and len(got.failed) == 1  # the rest is skipped
        assert_same(local, distributed)
        assert distributed.verify()["ok"]
        assert {tuple(c[3]["acl"] or ()) for c in contents(distributed)[1].values()} == {("hr",)}
        hits = distributed.search("widget number 3 retired", k=1)
        assert hits[0].source.endswith("note03.md")
