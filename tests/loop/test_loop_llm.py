"""The LLM stage end to end on a tiny Llama (the real trainers and local backend, in seconds): RAFT rows from the
ratings, a LoRA adapter trained on them, both models answering the eval set, a decision; then DPO on corrections.
What the adapter learns from a random tiny model means nothing — the flow and the records are what is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_recipe

from ragtune.kb import KnowledgeBase
from ragtune.loop import init_loop, loop_history, rollback, run_loop
from ragtune.loop.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECIPE = """
[evalset]
feedback_share = 0.3
unanswerable = 0.2
[embedder]
enabled = false
[demonstrations]
enabled = false
[llm]
enabled = true
method = "{method}"
distractors = 2
epochs = 1
batch_size = 4
grad_accum = 1
max_seq_len = 384
min_examples = 2
[llm.gate]
target = "answer_correctness"
guards = {{ refusal_accuracy = 0.01, faithfulness = 0.01, latency_p95 = 5.0 }}
[measure]
resamples = 500
latency_questions = 2
"""


def test_the_llm_stage_trains_an_adapter_and_the_gate_decides(handbook_kb: Path, tiny_llama: str, embedder) -> None:
    (handbook_kb / "ragtune.toml").write_text(f'llm = "local"\nllm_model = "{tiny_llama}"\nmax_new_tokens = 16\n')
    recipe = write_recipe(handbook_kb.parent / "loop.toml", RECIPE.format(method="sft"))
    with KnowledgeBase.open(handbook_kb, embedder=embedder) as kb:
        init_loop(kb, recipe)
        run = run_loop(kb)
    stage = run["phases"]["llm"]
    assert stage["outcome"] in ("promoted", "rejected"), stage
    rows = [json.loads(line) for line in Path(stage["datasets"]["sft"]).read_text().splitlines()]
    # RAFT rows: the answer prompt with the oracle and two retrieved distractors, a target citing the oracle.
    assert rows and {r["kind"] for r in rows} <= {"up", "correction"}
    for row in rows:
        system, user, target = row["messages"]
        assert user["content"].count("\n[") + user["content"].startswith("[") >= 2
        assert f"[{row['oracle']}]" in target["content"]
    ws = Workspace(handbook_kb)
    version = ws.version("llm", "v001")
    adapter = Path(version["serving"]["llm_adapter"])
    assert (adapter / "adapter_config.json").is_file() and version["training"]["method"] == "sft"
    decision = [h for h in loop_history_of(handbook_kb) if h.get("kind") == "decision"][-1]
    assert {"answer_correctness", "refusal_accuracy", "faithfulness"} <= set(decision["comparison"])
    with KnowledgeBase.open(handbook_kb) as kb:
        expected = str(adapter) if stage["outcome"] == "promoted" else None
        assert kb.settings.llm_adapter == expected
        # Either way the adapter can be made to serve, and back.
        rollback(kb, "llm", to="v001" if expected is None else "v000")
    with KnowledgeBase.open(handbook_kb) as kb:
        assert kb.settings.llm_adapter == (str(adapter) if expected is None else None)
        answer = kb.ask("How long is the refund window for enterprise customers?")
        assert answer.model  # the local backend answered with the adapter (or without), whatever it said


def loop_history_of(path: Path) -> list[dict]:
    with KnowledgeBase.open(path) as kb:
        return loop_history(kb)


def test_dpo_learns_from_corrections(handbook_kb: Path, tiny_llama: str, embedder) -> None:
    (handbook_kb / "ragtune.toml").write_text(f'llm = "local"\nllm_model = "{tiny_llama}"\nmax_new_tokens = 16\n')
    recipe = write_recipe(handbook_kb.parent / "loop.toml", RECIPE.format(method="dpo").replace(
        "min_examples = 2", "min_examples = 1"))
    with KnowledgeBase.open(handbook_kb, embedder=embedder) as kb:
        init_loop(kb, recipe)
        run = run_loop(kb)
    stage = run["phases"]["llm"]
    rows = [json.loads(line) for line in Path(stage["datasets"]["preference"]).read_text().splitlines()]
    assert rows and all(r["rating"] == "down" and r["corrected_answer"] for r in rows)
    assert stage["outcome"] in ("promoted", "rejected")
    assert Workspace(handbook_kb).version("llm", "v001")["training"]["method"] == "dpo"
