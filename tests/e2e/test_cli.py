"""The CLI as a user drives it: real subprocesses, real files, JSON output and exit codes."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def ragtune(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ragtune", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=300)


def test_cli_workflow(tmp_path, docs_dir):
    kb = str(tmp_path / "kb")
    init = ragtune("init", "--kb", kb, "--json", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["documents"] == 0

    (docs_dir / "broken.docx").write_bytes(b"not a zip file")
    first = ragtune("ingest", str(docs_dir), "--kb", kb, "--json", cwd=tmp_path)
    assert first.returncode == 1, "a failed file makes the exit code non-zero"
    summary = json.loads(first.stdout)
    assert summary["added"] == 5 and summary["failed"] == 1
    assert summary["failures"][0]["source"].endswith("broken.docx")

    (docs_dir / "broken.docx").unlink()
    again = ragtune("ingest", str(docs_dir), "--kb", kb, "--sync", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"seconds": 0} == {
        "added": 0, "updated": 0, "unchanged": 5, "duplicates": 0, "deleted": 1, "skipped": 0, "failed": 0,
        "chunks": 0, "seconds": 0, "ok": True, "failures": [],
    }

    found = ragtune("search", "how do I rotate keys", "--kb", kb, "-k", "2", "--json", "--filter",
                    '{"source_type": "md"}', cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert len(hits) == 2 and hits[0]["source"].endswith("security.md")
    assert {"chunk_id", "document_id", "source", "score", "text", "metadata"} <= hits[0].keys()
    assert hits[0]["metadata"]["source_type"] == "md"

    stats = json.loads(ragtune("kb", "stats", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert {"documents": 5, "failed": 0, "embedder": "all-MiniLM-L6-v2"}.items() <= stats.items()
    assert stats["chunks"] > 5

    docs = json.loads(ragtune("kb", "docs", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert len(docs) == 5 and {"id", "source", "type", "chunks", "status", "error"} <= docs[0].keys()
    travel = next(d for d in docs if d["source"].endswith("travel.txt"))
    removed = ragtune("kb", "rm", travel["id"], "--kb", kb, "--json", cwd=tmp_path)
    assert json.loads(removed.stdout) == {"deleted": [travel["id"]], "not_found": []}
    missing = ragtune("kb", "rm", "doesnotexist", "--kb", kb, cwd=tmp_path)
    assert missing.returncode == 1 and "no document doesnotexist" in missing.stdout

    verify = ragtune("kb", "verify", "--kb", kb, "--json", cwd=tmp_path)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True


def test_cli_errors_are_clear(tmp_path):
    missing = ragtune("search", "anything", "--kb", str(tmp_path / "none"), cwd=tmp_path)
    assert missing.returncode == 1 and "ragtune init" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "ragtune.toml").write_text("chunk_size = 64\nchunk_overlap = 100\n")
    bad = ragtune("init", "--kb", str(tmp_path / "kb"), "--json", cwd=tmp_path)
    assert bad.returncode == 1
    assert "chunk_overlap" in json.loads(bad.stdout)["error"] and "ragtune.toml" in json.loads(bad.stdout)["error"]


def test_kb_defaults_to_the_environment_variable(tmp_path, docs_dir):
    env = {"RAGTUNE_KB": str(tmp_path / "envkb")}
    assert ragtune("ingest", str(docs_dir / "handbook" / "travel.txt"), cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "envkb" / "ragtune.db").exists()
    hits = json.loads(ragtune("search", "Voyager", "--mode", "sparse", "--json", cwd=tmp_path, env=env).stdout)
    assert hits["hits"][0]["source"].endswith("travel.txt")


def test_eval_retrieval_on_a_tiny_beir_set(tmp_path):
    beir = tmp_path / "tiny"
    (beir / "qrels").mkdir(parents=True)
    corpus = {
        "d1": ("Key rotation", "API keys must be rotated every 90 days."),
        "d2": ("Refunds", "Enterprise customers have a refund window of 45 days."),
        "d3": ("Travel", "Economy class is required for flights under six hours."),
    }
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": t, "text": x}) for k, (t, x) in corpus.items()))
    (beir / "queries.jsonl").write_text("\n".join(json.dumps({"_id": q, "text": t}) for q, t in
                                                  [("q1", "how often rotate api keys"), ("q2", "refund window")]))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    out = ragtune("eval", "retrieval", str(beir), "--kb", str(tmp_path / "kb"), "--mode", "sparse",
                  "--mode", "hybrid", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["queries"] == 2 and result["corpus"] == 3
    for mode in ("sparse", "hybrid"):
        assert result["modes"][mode]["metrics"]["ndcg_cut_10"] == 1.0
        assert result["modes"][mode]["metrics"]["recall_100"] == 1.0


def test_data_beir_fetches_a_dataset_by_name_for_eval_retrieval(tmp_path):
    """`ragtune data beir NAME` downloads once into the cache; `eval retrieval NAME` then finds it offline."""
    import http.server
    import shutil
    import threading

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "beir" / "handbook"
    served = tmp_path / "served"
    shutil.make_archive(str(served / "handbook"), "zip", root_dir=fixture.parent, base_dir="handbook")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    env = {"RAGTUNE_BEIR_URL": f"http://127.0.0.1:{httpd.server_address[1]}/{{name}}.zip",
           "RAGTUNE_DATA_CACHE": str(tmp_path / "cache")}
    try:
        missing = ragtune("eval", "retrieval", "handbook", "--mode", "sparse", cwd=tmp_path, env=env)
        assert missing.returncode == 1 and "run 'ragtune data beir handbook'" in missing.stderr
        fetched = ragtune("data", "beir", "handbook", "--json", cwd=tmp_path, env=env)
        assert fetched.returncode == 0, fetched.stderr
        summary = json.loads(fetched.stdout)
        assert summary["corpus"] == 12 and summary["queries"] == 5
        assert Path(summary["path"]) == tmp_path / "cache" / "beir" / "handbook"
    finally:
        httpd.shutdown()
        httpd.server_close()
    out = ragtune("eval", "retrieval", "handbook", "--kb", str(tmp_path / "kb"), "--mode", "sparse", "--json",
                  cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["queries"] == 5


def test_ask_streams_then_lists_sources_and_speaks_json(tmp_path, docs_dir):
    kb = str(tmp_path / "kb")
    assert ragtune("ingest", str(docs_dir), "--kb", kb, cwd=tmp_path).returncode == 0
    shown = ragtune("ask", "What is the refund window for enterprise plans?", "--kb", kb, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "45 days" in shown.stdout and "refunds.md" in shown.stdout
    # No library noise on a plain ask (ragtune's own notices, like the one-time model conversion, may appear).
    assert "bitsandbytes" not in shown.stderr, shown.stderr
    out = ragtune("ask", "What is the capital of Peru?", "--kb", kb, "--json", cwd=tmp_path)
    result = json.loads(out.stdout)
    assert {"answer", "citations", "sources", "grounded", "refused", "removed_citations"} <= result.keys()
    assert result["refused"] is True and result["grounded"] is False
    assert result["answer"] == "The knowledge base does not contain an answer to this question."
    bad = ragtune("ask", "anything", "--kb", kb, "--llm", "gpt-9", cwd=tmp_path)
    assert bad.returncode == 1 and "llm" in bad.stderr and "Traceback" not in bad.stderr
