"""The loop on a real knowledge base (the handbook examples, scripted ratings, the real bundled embedder): the frozen
eval set, a run of the embedder stage from feedback to a recorded decision, only new feedback on the next run,
rollback through 'kb reembed''s atomic path, and a run killed during training that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PII_QUESTION, add_feedback, write_recipe

from ragtune.errors import ConfigError
from ragtune.evaluate.samples import file_sha256
from ragtune.kb import KnowledgeBase
from ragtune.loop import init_loop, loop_history, loop_status, rollback, run_loop
from ragtune.loop.gate import inconclusive
from ragtune.loop.hygiene import normalise_question
from ragtune.loop.workspace import Workspace

EMBEDDER_RECIPE = """
[evalset]
feedback_share = 0.3
unanswerable = 0.2
[embedder]
enabled = true
min_examples = 5
epochs = 1
batch_size = 8
negatives = 1
eval_split = 0.0
[embedder.gate]
target = "ndcg@10"
guards = { latency_p95 = 5.0, peak_rss = 0.5 }
[demonstrations]
enabled = false
[measure]
resamples = 1000
rss_questions = 2
"""


@pytest.mark.integration
def test_init_freezes_the_eval_set_and_records_what_serves(handbook_kb: Path, embedder) -> None:
    recipe = write_recipe(handbook_kb.parent / "loop.toml", EMBEDDER_RECIPE)
    with KnowledgeBase.open(handbook_kb, embedder=embedder) as kb:
        status = init_loop(kb, recipe)
        ws = Workspace(kb.path)
        rows = [json.loads(line) for line in ws.evalset_path.read_text().splitlines()]
        held = set(ws.state()["evalset"]["held_answer_ids"])
        assert status["evalset"]["rows"] == len(rows) and status["evalset"]["sha256"] == file_sha256(ws.evalset_path)
        assert len(held) == round(0.3 * 27) and {r["id"].removeprefix("f-") for r in rows if r["id"].startswith("f-")} \
            <= held
        assert sum(r.get("answerable") is False for r in rows) >= 1  # unanswerable probes
        assert all(r.get("reference_context_ids") for r in rows if r.get("origin") == "feedback-up")
        assert {s: v["champion"] for s, v in status["stages"].items()} == dict.fromkeys(
            ("embedder", "reranker", "llm", "demonstrations"), "v000")
        assert status["stages"]["embedder"]["serving"]["embedder"] == "all-MiniLM-L6-v2"
        assert status["feedback"] == {"up": 25, "down": 2, "corrections": 2, "total": 27, "held_out": len(held)}
        with pytest.raises(ConfigError, match="set up already"):
            init_loop(kb, recipe)
        assert loop_history(kb)[0]["kind"] == "init"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("carry", [True, False])
def test_a_run_turns_new_feedback_into_a_recorded_decision_and_rollback_is_atomic(handbook_kb: Path, embedder,
                                                                                   carry: bool) -> None:
    text = EMBEDDER_RECIPE if carry else EMBEDDER_RECIPE.replace("[measure]", "[data]\ncarry_inconclusive = false\n"
                                                                            "[measure]")
    recipe = write_recipe(handbook_kb.parent / "loop.toml", text)
    with KnowledgeBase.open(handbook_kb, embedder=embedder) as kb:
        init_loop(kb, recipe)
        run = run_loop(kb)
    stage = run["phases"]["embedder"]
    assert run["status"] == "done" and stage["outcome"] in ("promoted", "rejected")
    ws = Workspace(handbook_kb)
    evalset = {normalise_question(json.loads(line)["user_input"]) for line in ws.evalset_path.read_text().splitlines()}
    pairs_file = Path(stage["datasets"]["pairs"])
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    # Hygiene: no eval question, personal data redacted, counted; provenance recorded.
    assert pairs and not {normalise_question(p["query"]) for p in pairs} & evalset
    # The rated question with an e-mail address reached either the eval set or the training pairs: redacted.
    for written in [*ws.root.rglob("*.jsonl"), *ws.root.rglob("*.json")]:
        assert "jan.kowalski@example.com" not in written.read_text(encoding="utf-8"), written
    in_eval = "[EMAIL]" in ws.evalset_path.read_text(encoding="utf-8")
    assert in_eval or (any("[EMAIL]" in p["query"] for p in pairs) and stage["hygiene"]["pii"]["email"] >= 1)
    assert ws.state()["evalset"]["pii_redacted"] == ({"email": 1} if in_eval else {})
    assert stage["data_sha256"]["pairs"] == file_sha256(pairs_file)
    held = set(ws.state()["evalset"]["held_answer_ids"])
    assert all(p["answer_id"] not in held for p in pairs)
    decision = next(h for h in ws.history() if h.get("kind") == "decision")
    assert decision["verdict"] == stage["outcome"] and decision["seed"] == 42
    assert decision["target"]["metric"] == "ndcg@10" and decision["target"]["n"] >= 5
    assert decision["target"]["low"] <= decision["target"]["difference"] <= decision["target"]["high"]
    assert decision["data"]["sha256"] == stage["data_sha256"] and decision["evalset_sha256"] == file_sha256(
        ws.evalset_path)
    assert {g["metric"] for g in decision["guards"]} == {"latency_p95", "peak_rss"}
    assert decision["metrics"]["peak_rss"]["champion"] > 100  # MB, measured in a process of its own
    challenger = ws.version("embedder", "v001")
    with KnowledgeBase.open(handbook_kb) as kb:
        # What serves is the champion the verdict chose, and a rejected challenger left nothing staged.
        expected = challenger["serving"]["embedder"] if stage["outcome"] == "promoted" else "all-MiniLM-L6-v2"
        assert kb.settings.embedder == expected and kb.store.reembed_pending() is None
        assert loop_status(kb)["stages"]["embedder"]["champion"] == ("v001" if stage["outcome"] == "promoted"
                                                                     else "v000")
        first_ids = {i for a, b in stage["feedback"]["ids"] for i in range(a, b + 1)}
        through = ws.state()["stages"].get("embedder", {}).get("feedback_through", 0)
        kept = decision.get("feedback_kept", False)
        assert kept == (carry and stage["outcome"] == "rejected" and inconclusive(stage["verdict"]))
        if kept:  # "not yet": its feedback waits for more
            assert through < min(first_ids) and "data.carry_inconclusive" in decision["why"][-1]
        else:  # decided: the next run takes only new feedback, none yet
            again = run_loop(kb)
            assert again["phases"]["embedder"]["outcome"] == "waiting"
            assert through == stage["feedback"]["through"]
        add_feedback(kb, "n", ["What is the refund policy for enterprise plans?", "How do I request a refund?",
                               "Who is the finance director?", "How long is sick leave?", "What is in onboarding?",
                               "What is the per diem for travel?", PII_QUESTION + " thanks"])
        third = run_loop(kb, stages=["embedder"])
        ids = {i for first, last in third["phases"]["embedder"]["feedback"]["ids"] for i in range(first, last + 1)}
        assert ids and min(ids - first_ids) > stage["feedback"]["through"]
        assert (first_ids <= ids) == kept  # kept feedback trains again, beside the new

        # Rollback: make the other version serve, through the atomic re-embed, and back.
        target = "v001" if stage["outcome"] == "rejected" else "v000"
        done = rollback(kb, "embedder", to=target)
        assert done["to"] == target
    with KnowledgeBase.open(handbook_kb) as kb:
        assert kb.settings.embedder == ws.version("embedder", target)["serving"]["embedder"]
        assert kb.verify()["ok"] and kb.search("refund window for enterprise customers", 3)
        assert loop_status(kb)["stages"]["embedder"]["champion"] == target
        back = rollback(kb, "embedder")  # to the champion before it
        assert back["to"] != target
        assert ws.history()[-1]["verdict"] == "rolled back"
    with KnowledgeBase.open(handbook_kb) as kb:
        assert kb.verify()["ok"] and kb.settings.embedder == ws.version("embedder", back["to"])["serving"]["embedder"]


def _phase(kb: Path) -> str | None:
    ws = Workspace(kb)
    active = ws.state().get("active_run")
    return ws.run(active)["phases"]["embedder"]["phase"] if active else None


@pytest.mark.integration
@pytest.mark.slow
def test_a_run_killed_during_training_leaves_the_kb_serving_and_resumes(handbook_kb: Path, embedder) -> None:
    recipe = write_recipe(handbook_kb.parent / "loop.toml", EMBEDDER_RECIPE.replace("epochs = 1", "epochs = 3"))
    with KnowledgeBase.open(handbook_kb, embedder=embedder) as kb:
        init_loop(kb, recipe)
        before = kb.search("How long is the refund window for enterprise customers?", 3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "ragtune", "loop", "run", "--kb", str(handbook_kb), "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _phase(handbook_kb) != "train" and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert _phase(handbook_kb) == "train", process.communicate()[1][-2000:]
    while not list((handbook_kb / "loop" / "versions" / "embedder" / "v001").glob("model/checkpoints")) and \
            time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with KnowledgeBase.open(handbook_kb) as kb:
        # The old champion answers as before; the store is whole; the interrupted run is reported.
        assert kb.settings.embedder == "all-MiniLM-L6-v2" and kb.verify()["ok"]
        assert [h.chunk_id for h in kb.search("How long is the refund window for enterprise customers?", 3)] == \
            [h.chunk_id for h in before]
        status = loop_status(kb)
        assert status["active_run"] == {"run": "r001", "phases": {"embedder": "train"}}
        resumed = run_loop(kb)
    assert resumed["run"] == "r001" and resumed["resumed"] == 1 and resumed["status"] == "done"
    assert resumed["phases"]["embedder"]["outcome"] in ("promoted", "rejected")
