"""The CLI as a user drives it: real subprocesses, real files, JSON output and exit codes."""

from __future__ import annotations

import functools
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def ragtune(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ragtune", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=300)


def ragtune_in_a_terminal(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ragtune with stderr on a pseudo-terminal (as in a shell); returns the result and what stderr showed."""
    main, terminal = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=terminal, text=True)
    os.close(terminal)
    shown = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        shown += data
    os.close(main)
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.wait(300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, ""), shown.decode("utf-8", "replace")


def test_cli_workflow(tmp_path, docs_dir):
    kb = str(tmp_path / "kb")
    init = ragtune("init", "--kb", kb, "--json", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["documents"] == 0
    empty = ragtune("search", "refund window", "--kb", kb, cwd=tmp_path)
    assert empty.returncode == 0 and "no results" in empty.stdout
    assert f"has no documents yet — add some with 'ragtune ingest FILES --kb {kb}'" in empty.stderr
    asked = ragtune("ask", "What is the refund window?", "--kb", kb, "--json", cwd=tmp_path)
    assert asked.returncode == 1 and "has no documents yet" in json.loads(asked.stdout)["error"]

    (docs_dir / "broken.docx").write_bytes(b"not a zip file")
    (docs_dir / "blank.md").write_text("")
    (docs_dir / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    first = ragtune("ingest", str(docs_dir), "--kb", kb, "--json", cwd=tmp_path)
    assert first.returncode == 1, "a failed file makes the exit code non-zero"
    summary = json.loads(first.stdout)
    assert summary["added"] == 5 and summary["failed"] == 1 and summary["empty"] == 1 and summary["skipped"] == 1
    assert summary["failures"][0]["source"].endswith("broken.docx")
    assert [Path(p).name for p in summary["empty_files"]] == ["blank.md"]
    assert [Path(p).name for p in summary["skipped_files"]] == ["photo.png"]

    for name in ("broken.docx", "blank.md", "photo.png"):
        (docs_dir / name).unlink()
    again = ragtune("ingest", str(docs_dir), "--kb", kb, "--sync", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    again_summary = json.loads(again.stdout)
    assert set(again_summary.pop("stages_s")) <= {"wait", "parse", "chunk", "embed", "store"}
    assert again_summary | {"seconds": 0} == {
        "added": 0, "updated": 0, "unchanged": 5, "duplicates": 0, "deleted": 2, "skipped": 0, "empty": 0,
        "failed": 0, "chunks": 0, "seconds": 0, "ok": True, "failures": [], "skipped_files": [], "empty_files": [],
    }

    found = ragtune("search", "how do I rotate keys", "--kb", kb, "-k", "2", "--json", "--filter",
                    '{"source_type": "md"}', cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert len(hits) == 2 and hits[0]["source"].endswith("security.md")
    assert {"chunk_id", "document_id", "source", "score", "text", "metadata"} <= hits[0].keys()
    assert hits[0]["metadata"]["source_type"] == "md"
    # The server's vocabulary (number, name, snippet), and what the score is.
    assert [h["number"] for h in hits] == [1, 2] and hits[0]["name"] == hits[0]["source"]
    assert hits[0]["score_kind"] == "dbsf" and {"dense", "dense_rank"} <= hits[0]["scores"].keys()
    assert "loading" not in found.stderr, "no spinner when stderr is not a terminal"
    shown, terminal = ragtune_in_a_terminal("search", "refund window for enterprise plans", "--kb", kb, "-k", "2",
                                            cwd=tmp_path)
    assert shown.returncode == 0, terminal
    assert "loading the embedding model" in terminal, "a spinner on stderr in a terminal while the model loads"
    first_line = shown.stdout.splitlines()[0]
    assert re.search(r"dbsf \d\.\d+ \(cosine 0\.\d+ #\d+, bm25 \d+\.\d+ #\d+\)", first_line), shown.stdout
    assert "scores: dbsf" in shown.stdout and "compare ranks, not values" in shown.stdout
    assert "cosine" in shown.stdout and "BM25 keyword score" in shown.stdout and "loading" not in shown.stdout
    sparse = ragtune("search", "refund window", "--kb", kb, "--mode", "sparse", cwd=tmp_path)
    assert "bm25 " in sparse.stdout.splitlines()[0] and "rrf" not in sparse.stdout

    stats = json.loads(ragtune("kb", "stats", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert {"documents": 5, "failed": 0, "embedder": "all-MiniLM-L6-v2"}.items() <= stats.items()
    assert stats["chunks"] > 5

    docs = json.loads(ragtune("kb", "docs", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert len(docs) == 5 and {"id", "source", "type", "chunks", "status", "error"} <= docs[0].keys()
    refunds = next(d for d in docs if d["source"].endswith("refunds.md"))
    show = ragtune("kb", "show", "docs/handbook/refunds.md", "--kb", kb, "--json", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    shown_doc = json.loads(show.stdout)
    assert shown_doc["document"]["id"] == refunds["id"] and shown_doc["document"]["metadata"]["chunker"] == "markdown"
    assert len(shown_doc["chunks"]) == refunds["chunks"] and shown_doc["chunks"][0]["index"] == 0
    assert shown_doc["chunks"][2]["metadata"]["heading_path"] == ["Refund policy", "Enterprise plans"]
    assert "45 days" in shown_doc["chunks"][2]["text"]
    text = ragtune("kb", "show", refunds["id"], "--kb", kb, cwd=tmp_path).stdout
    assert f"chunk 3/{refunds['chunks']} · Refund policy › Enterprise plans" in text and "chunker markdown" in text

    travel = next(d for d in docs if d["source"].endswith("travel.txt"))
    removed = ragtune("kb", "rm", travel["id"], "--kb", kb, "--json", cwd=tmp_path)
    assert json.loads(removed.stdout) == {"deleted": [travel["id"]], "not_found": []}
    missing = ragtune("kb", "rm", "doesnotexist", "--kb", kb, cwd=tmp_path)
    assert missing.returncode == 1 and "no document doesnotexist" in missing.stdout
    by_path = ragtune("kb", "rm", "docs/handbook/security.md", "--kb", kb, "--json", cwd=tmp_path)
    security = next(d for d in docs if d["source"].endswith("security.md"))
    assert by_path.returncode == 0 and json.loads(by_path.stdout) == {"deleted": [security["id"]], "not_found": []}

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


def test_ingest_names_empty_and_skipped_files(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("The office closes at six on Fridays.")
    (folder / "blank.md").write_text("")
    (folder / "diagram.svgz").write_bytes(b"\x1f\x8b")
    done = ragtune("ingest", str(folder), "--kb", str(tmp_path / "kb"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "added 1" in done.stdout and "skipped 1 · empty 1" in done.stdout
    assert f"empty {folder / 'blank.md'}: stored without text to search" in done.stderr
    assert f"skipped {folder / 'diagram.svgz'}: no parser for this file type" in done.stderr
    listed = ragtune("kb", "docs", "--kb", str(tmp_path / "kb"), cwd=tmp_path)
    assert "ok (empty)" in listed.stdout


def test_ask_writes_the_verified_answer_once_then_grouped_sources_and_speaks_json(tmp_path, docs_dir):
    kb = str(tmp_path / "kb")
    assert ragtune("ingest", str(docs_dir), "--kb", kb, cwd=tmp_path).returncode == 0
    shown, terminal = ragtune_in_a_terminal("ask", "What is the refund window for enterprise plans?", "--kb", kb,
                                            cwd=tmp_path)
    assert shown.returncode == 0, terminal
    # Piped: the verified answer alone (once), then one numbered line per document, its path relative to the cwd.
    answer, _, listing = shown.stdout.partition("\n\n")
    assert "45 days" in answer and "\n" not in answer.strip()
    assert "[1] docs/handbook/refunds.md" in listing and str(tmp_path) not in listing
    assert listing.count("refunds.md") == 1
    # While models load, a spinner says so on the terminal (never on stdout).
    assert "loading the embedding model" in terminal and "loading the language model" in terminal, terminal
    assert "loading" not in shown.stdout
    # No library noise on a plain ask (ragtune's own notices, like the one-time model conversion, may appear).
    assert "bitsandbytes" not in terminal, terminal
    out = ragtune("ask", "What is the capital of Peru?", "--kb", kb, "--json", cwd=tmp_path)
    result = json.loads(out.stdout)
    assert {"answer", "citations", "sources", "grounded", "refused", "mode", "removed_claims",
            "removed_citations"} <= result.keys()
    assert result["refused"] is True and result["grounded"] is False and result["mode"] == "refusal"
    # The server's vocabulary: answer_id (not id), numbered sources that say whether they are cited.
    assert result["answer_id"] and "id" not in result
    assert [s["number"] for s in result["sources"]] == list(range(1, len(result["sources"]) + 1))
    assert all(s["cited"] is False and s["name"] and s["snippet"] for s in result["sources"])
    names = [s["name"] for s in result["sources"]]
    assert len(names) == len(set(names))  # a refusal lists distinct documents
    assert result["answer"] == "The knowledge base does not contain an answer to this question."
    quoted = json.loads(ragtune("ask", "病假超过几天需要医院证明？", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert quoted["mode"] == "extractive" and "三天" in quoted["answer"] and quoted["sources"][0]["cited"]
    # With stdout on a terminal the answer streams; the screen ends up holding it once, and no unverified draft.
    screen = _in_a_terminal("ask", "How often must API keys be rotated?", "--kb", kb, cwd=tmp_path)
    lines = [line.strip() for line in screen.splitlines() if "90 days" in line]
    assert len(lines) == 1 and "[1]" in lines[0], screen
    bad = ragtune("ask", "anything", "--kb", kb, "--llm", "gpt-9", cwd=tmp_path)
    assert bad.returncode == 1 and "llm" in bad.stderr and "Traceback" not in bad.stderr


def _in_a_terminal(*args: str, cwd: Path) -> str:
    """Run ragtune with stdout and stderr on a pseudo-terminal; what it wrote, without escape sequences."""
    import re

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "ragtune", *args], cwd=cwd, env=env, stdin=child,
                               stdout=child, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=300) == 0
    os.close(main)
    text = b"".join(chunks).decode("utf-8", "replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")


def test_search_shows_the_date_it_ranked(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.txt").write_text("Time: 20260514_19:30\nWolfgangSchulz: Trattoria Roma at eight? Fresh pasta there.")
    (logs / "b.txt").write_text("Time: 20260620_19:00\nWolfgangSchulz: I suggest dinner at Umi, the sushi place.")
    kb = str(tmp_path / "kb")
    assert ragtune("ingest", str(logs), "--kb", kb, cwd=tmp_path).returncode == 0
    found = json.loads(ragtune("search", "Where did Wolfgang suggest dinner on 20260514?", "--kb", kb, "--json",
                               cwd=tmp_path).stdout)
    assert found["dates"] == ["2026-05-14 (20260514)"] and found["hits"][0]["source"].endswith("a.txt")
    assert found["hits"][0]["metadata"]["created_at"] == "2026-05-14T19:30"
    shown = ragtune("search", "Where did Wolfgang suggest dinner on 20260514?", "--kb", kb, cwd=tmp_path)
    assert "dated: 2026-05-14 (20260514)" in shown.stdout
    missing = ragtune("search", "Where did Wolfgang suggest dinner on 20260101?", "--kb", kb, cwd=tmp_path)
    assert "no searchable document is dated 2026-01-01" in missing.stderr
