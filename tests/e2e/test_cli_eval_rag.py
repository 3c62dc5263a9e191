"""`ragtune eval rag` and `ragtune data eval-set` as a user drives them: real subprocesses, files, JSON, reports,
a comparison with a saved run, and the whole loop on a real KB with the bundled model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "handbook"
REFUND = "Enterprise customers have a refund window of 45 days from the invoice date."
SAMPLES = [
    {"id": "a", "user_input": "What is the refund window for enterprise customers?", "retrieved_contexts": [REFUND],
     "response": "Enterprise customers have a refund window of 45 days [1].", "reference": "45 days"},
    {"id": "b", "user_input": "What is the refund window for enterprise customers?", "retrieved_contexts": [REFUND],
     "response": "Enterprise customers have a refund window of 90 days [1].", "reference": "45 days"},
    {"id": "c", "user_input": "Who is the chief executive?", "retrieved_contexts": [REFUND],
     "response": "I don't know.", "answerable": False},
]


def ragtune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAGTUNE_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "ragtune", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_score_given_answers_report_and_compare(tmp_path: Path) -> None:
    data = tmp_path / "samples.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in SAMPLES))
    first = ragtune("eval", "rag", "--data", str(data), "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert set(result) >= {"metrics", "items", "config", "timings_ms"}
    assert [item["id"] for item in result["items"]] == ["a", "b", "c"]
    assert result["items"][1]["faithfulness"] == 0.0 and result["items"][0]["faithfulness"] == 1.0
    assert result["metrics"]["refusal_accuracy"] == 1.0
    for item in result["items"]:
        assert all(math.isfinite(item[m]) for m in result["metrics"])

    run = tmp_path / "run.json"
    saved = ragtune("eval", "rag", "--data", str(data), "--metric", "faithfulness", "--metric",
                    "answer_correctness", "--save", str(run), "--json", cwd=tmp_path)
    assert saved.returncode == 0, saved.stderr
    assert list(json.loads(run.read_text())["metrics"]) == ["faithfulness", "answer_correctness"]

    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text("".join(json.dumps({**row, "response": SAMPLES[0]["response"]} if row["id"] == "b" else row)
                             + "\n" for row in SAMPLES))
    report = tmp_path / "report.html"
    compared = ragtune("eval", "rag", "--data", str(fixed), "--metric", "faithfulness", "--metric",
                       "answer_correctness", "--report", str(report), "--compare", str(run), cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert "compared with the baseline" in compared.stdout and "faithfulness" in compared.stdout
    assert "+0.3333" in compared.stdout  # faithfulness: item b went from 0 to 1 of 3 items
    html = report.read_text()
    assert "id='comparison-table'" in html and "Bitcoin" not in html and "90 days" not in html

    bad = ragtune("eval", "rag", "--data", str(data), "--metric", "faithfullness", "--json", cwd=tmp_path)
    assert bad.returncode == 1 and "unknown metric" in json.loads(bad.stdout)["error"]
    neither = ragtune("eval", "rag", "--json", cwd=tmp_path)
    assert neither.returncode == 1 and "--questions" in json.loads(neither.stdout)["error"]


def test_eval_set_then_answer_and_score_with_the_bundled_model(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("refunds.md", "travel.txt"):
        (docs / name).write_text((EXAMPLES / name).read_text())
    kb = str(tmp_path / "kb")
    assert ragtune("ingest", str(docs), "--kb", kb, "--json", cwd=tmp_path).returncode == 0

    out = tmp_path / "eval.jsonl"
    made = ragtune("data", "eval-set", "--kb", kb, "--out", str(out), "--size", "3", "--unanswerable", "0.34",
                   "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["rows"] == len(rows) >= 2 and summary["unanswerable"] == 1
    meta = json.loads((tmp_path / "eval.meta.json").read_text())
    assert meta["sha256"] == summary["sha256"]

    scored = ragtune("eval", "rag", "--kb", kb, "--questions", str(out), "--metric", "context_recall@5",
                     "--metric", "faithfulness", "--metric", "refusal_accuracy", "--json", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert result["config"]["data_sha256"] == meta["sha256"] and len(result["items"]) == len(rows)
    assert result["counts"]["refusal_accuracy"] == 1
    assert result["metrics"]["context_recall@5"] == 1.0  # every question finds its own chunk (the round trip)
    assert "generate" in result["latency_ms"] or "total" in result["latency_ms"]
