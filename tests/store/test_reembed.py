"""Re-embedding a knowledge base: computed beside the old vectors, swapped in one step, safe to SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragtune.embed import checkpoint_hash
from ragtune.errors import EmbedderMismatchError
from ragtune.kb import KnowledgeBase
from ragtune.types import Block, BlockType, Document

TOPICS = ["invoice", "glacier", "violin", "compiler", "orchard", "satellite", "bakery", "harbour"]

REEMBED = """
import sys
from ragtune.kb import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1])
kb.reembed(sys.argv[2], batch_size=2)
kb.close()
"""


def _documents(n: int) -> list[tuple[str, Document]]:
    docs = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = f"Note {i} about the {topic}: item {i} of the {topic} register has code {i * 37 % 101}."
        uri = f"test:doc{i:04d}"
        docs.append((uri, Document.assemble([Block(type=BlockType.PARAGRAPH, text=text)], source=uri,
                                            source_type="txt")))
    return docs


@pytest.fixture(scope="module")
def new_model(tmp_path_factory) -> Path:
    """A model directory that is not the bundled MiniLM: its word embeddings slightly perturbed."""
    import torch
    from sentence_transformers import SentenceTransformer

    from ragtune.embed.sentence_transformers import resolve_model

    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    weights = model[0].auto_model.embeddings.word_embeddings.weight
    with torch.no_grad():
        weights.add_(torch.randn(weights.shape, generator=torch.Generator().manual_seed(0)) * 0.01)
    out = tmp_path_factory.mktemp("models") / "emb-001"
    model.save(str(out))
    return out


def _build(path: Path, embedder, n: int) -> None:
    with KnowledgeBase.open(path, create=True, embedder=embedder) as kb:
        kb.ingest_documents(_documents(n), total=n)


def _meta(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


def _reembedded(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM reembed_vectors").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_mid_reembed_leaves_a_working_kb_on_the_old_model_and_a_rerun_resumes(
    tmp_path: Path, embedder, new_model: Path
) -> None:
    kb_path = tmp_path / "kb"
    _build(kb_path, embedder, 240)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", REEMBED, str(kb_path), str(new_model)], env=env)
    deadline = time.monotonic() + 240
    try:
        while _reembedded(kb_path / "ragtune.db") < 4:
            assert proc.poll() is None, "re-embed finished before it could be interrupted"
            assert time.monotonic() < deadline, "no new vector was committed in time"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _meta(kb_path / "ragtune.db")["embedder"] == embedder.name

    with KnowledgeBase.open(kb_path) as kb:
        stats = kb.stats()
        assert stats["embedder"] == embedder.name and stats["dim"] == 384
        pending = stats["reembed_pending"]
        assert pending["embedder"] == str(new_model) and 0 < pending["vectors_done"] < 240
        assert kb.verify()["ok"]
        hits = kb.search("violin register code", k=5, mode="dense")
        assert hits and all("violin" in h.text for h in hits[:3])

        report = kb.reembed(str(new_model), batch_size=64)
        assert report["resumed"] and report["reused_vectors"] >= 4
        assert report["encoded_vectors"] + report["reused_vectors"] == report["chunks"] == 240
        stats = kb.stats()
        assert stats["embedder"] == str(new_model) and stats["reembed_pending"] is None
        assert stats["embedder_checkpoint"] == checkpoint_hash(str(new_model)) != ""
        assert kb.verify()["ok"]

    with KnowledgeBase.open(kb_path) as kb:  # the new model is what the KB opens with now
        assert kb.embedder.name == str(new_model)
        hits = kb.search("glacier register code", k=3, mode="dense")
        assert all("glacier" in h.text for h in hits)
        text = hits[0].text
        stored = kb.store.vectors([hits[0].chunk_id])[hits[0].chunk_id]
        assert np.allclose(stored, kb.embedder.encode_documents([text])[0], atol=1e-5)
        assert not np.allclose(stored, embedder.encode_documents([text])[0], atol=1e-3)
    with pytest.raises(EmbedderMismatchError, match="all-MiniLM-L6-v2"):
        KnowledgeBase.open(kb_path, embedder="all-MiniLM-L6-v2")


class _Rotated:
    """MiniLM under another name, its vectors negated in the last half of the dimensions (as good, not equal)."""

    def __init__(self, inner, name: str = "rotated-minilm") -> None:
        self.inner, self.name, self.dim = inner, name, inner.dim

    def _flip(self, vectors: np.ndarray) -> np.ndarray:
        vectors = vectors.copy()
        vectors[:, self.dim // 2 :] *= -1
        return vectors

    def encode_documents(self, texts):
        return self._flip(self.inner.encode_documents(texts))

    def encode_queries(self, texts):
        return self._flip(self.inner.encode_queries(texts))

    def token_counter(self):
        return self.inner.token_counter()


@pytest.mark.integration
def test_another_target_restarts_and_a_failing_encoder_leaves_the_old_vectors(tmp_path: Path, embedder) -> None:
    kb_path = tmp_path / "kb"
    _build(kb_path, embedder, 12)
    with KnowledgeBase.open(kb_path) as kb:
        before = kb.search("orchard register", k=3, mode="dense")
        calls = {"n": 0}

        def failing(texts):
            calls["n"] += 1
            if calls["n"] > 2:
                raise RuntimeError("out of memory")
            return embedder.encode_documents(texts)

        with pytest.raises(RuntimeError):
            kb.store.reembed(failing, name="half-done", dim=384, batch_size=3)
        assert kb.store.reembed_pending() == {"embedder": "half-done", "dim": 384, "checkpoint": "",
                                              "vectors_done": 6}
        assert kb.stats()["embedder"] == embedder.name
        assert [h.chunk_id for h in kb.search("orchard register", k=3, mode="dense")] == [h.chunk_id for h in before]

        report = kb.reembed(_Rotated(embedder), batch_size=5)  # another target: starts over
        assert not report["resumed"] and report["encoded_vectors"] == 12 and report["reused_vectors"] == 0
        after = kb.search("orchard register", k=3, mode="dense")
        assert [h.chunk_id for h in after] == [h.chunk_id for h in before]
        assert kb.verify()["ok"] and kb.stats()["embedder"] == "rotated-minilm"


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_reembed_then_stats_reports_the_new_embedder(tmp_path: Path, embedder, new_model: Path) -> None:
    from ragtune.cli import app

    kb_path = tmp_path / "kb"
    _build(kb_path, embedder, 10)
    runner = CliRunner()
    done = runner.invoke(app, ["kb", "reembed", "--kb", str(kb_path), "--embedder", str(new_model), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["chunks"] == 10 and report["previous_embedder"] == embedder.name
    stats = runner.invoke(app, ["kb", "stats", "--kb", str(kb_path), "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["embedder"] == str(new_model)
    assert json.loads(stats.stdout)["embedder_checkpoint"] == report["checkpoint"]
    verify = runner.invoke(app, ["kb", "verify", "--kb", str(kb_path), "--json"])
    assert verify.exit_code == 0, verify.output
    missing = runner.invoke(app, ["kb", "reembed", "--kb", str(tmp_path / "nokb"), "--embedder", "x", "--json"])
    assert missing.exit_code == 1 and "no knowledge base" in missing.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_a_model_retrained_in_place_is_caught_and_reembed_repairs_it(tmp_path: Path, new_model: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "emb-002"
    shutil.copytree(new_model, model)
    kb_path = tmp_path / "kb"
    _build(kb_path, str(model), 6)
    recorded = _meta(kb_path / "ragtune.db")["embedder_checkpoint"]
    assert recorded == checkpoint_hash(str(model)) != ""

    # "Train again" into the same directory: same name, other weights.
    weights = model / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    state[key] = state[key] * 1.01
    save_file(state, str(weights), metadata={"format": "pt"})
    with KnowledgeBase.open(kb_path) as kb:
        assert kb.stats()["chunks"] == 6  # catalog commands still work
        with pytest.raises(EmbedderMismatchError, match=r"ragtune kb reembed --kb .* --embedder"):
            kb.search("glacier", k=1)
        report = kb.reembed(str(model))
    assert report["checkpoint"] == checkpoint_hash(str(model)) != recorded
    with KnowledgeBase.open(kb_path) as kb:
        assert "glacier" in kb.search("glacier", k=1)[0].text
