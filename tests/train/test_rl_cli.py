"""The reward-model, GRPO and best-of-n commands as a user drives them: train reward, model score, train grpo
over a knowledge base, ask --best-of --reward."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from train_helpers import write_jsonl
from typer.testing import CliRunner

from ragtune.cli import app

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "recipes" / "data"


@pytest.fixture(scope="module")
def handbook_kb(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[Path]:
    from ragtune.kb import KnowledgeBase

    path = tmp_path_factory.mktemp("rl-cli") / "kb"
    with KnowledgeBase.open(path, create=True, embedder=embedder) as kb:  # type: ignore[arg-type]
        kb.ingest(ROOT / "examples" / "handbook")
    yield path


def quiet(run_dir: Path, model: str, *extra: str) -> list[str]:
    settings = [f"model.name={model}", f"output.dir={run_dir}", "output.report_to=[]", "train.batch_size=4",
                "train.grad_accum=1", "train.logging_steps=1", *extra]
    return [arg for setting in settings for arg in ("--set", setting)]


@pytest.mark.e2e
@pytest.mark.slow
def test_reward_score_grpo_and_best_of(tmp_path: Path, tiny_model_dir: str, handbook_kb: Path) -> None:
    runner = CliRunner()
    reward_dir = tmp_path / "runs" / "reward-001"
    result = runner.invoke(app, ["train", "reward", str(ROOT / "recipes" / "reward.toml"), *quiet(
        reward_dir, tiny_model_dir, "train.max_steps=2", "data.max_examples=12", "data.max_seq_len=512",
        "train.eval_steps=0"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "reward" and summary["steps"] == 2 and summary["eval_accuracy"] is not None

    held = write_jsonl(tmp_path / "held.jsonl", [
        json.loads(line) for line in (DATA / "handbook-pairs-heldout.jsonl").read_text().splitlines()[:6]])
    result = runner.invoke(app, ["model", "score", str(reward_dir), "--data", str(held), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pairs"] == 6 and 0 <= report["accuracy"] <= 1 and "by_kind" in report
    result = runner.invoke(app, ["model", "score", str(reward_dir), "--data", str(held)])
    assert result.exit_code == 0 and "length (longer reply wins)" in result.output

    # Questions without sources: the knowledge base of rl.kb gives them.
    questions = write_jsonl(tmp_path / "q.jsonl", [
        {"question": "How long must passwords be?", "reference": "At least 14 characters [1].", "answerable": True},
        {"question": "What is the Wi-Fi password for guests?", "answerable": False},
    ])
    grpo_dir = tmp_path / "runs" / "grpo-001"
    result = runner.invoke(app, ["train", "grpo", str(ROOT / "recipes" / "grpo.toml"), *quiet(
        grpo_dir, tiny_model_dir, "train.max_steps=1", f"data.path={questions}", 'data.eval_path=""',
        "data.eval_split=0.0", f"rl.kb={handbook_kb}", "rl.max_completion_length=8", "train.eval_steps=0",
        "rewards.reward_model=0.5", f"rewards.model={reward_dir}"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "grpo" and summary["steps"] == 1
    record = json.loads((grpo_dir / "run.json").read_text())
    assert record["data"]["rewards"]["reward_model"] == 0.5
    assert any("rewards/reward_model/mean" in h for h in record["log_history"])

    result = runner.invoke(app, ["ask", "How long must passwords be?", "--kb", str(handbook_kb), "--best-of", "2",
                                 "--reward", str(reward_dir), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["best_of"]["n"] == 2 and len(answer["best_of"]["candidates"]) == 2
    chosen = answer["best_of"]["candidates"][answer["best_of"]["chosen"]]
    assert chosen["answer"] == answer["answer"]


@pytest.mark.e2e
def test_best_of_chosen_by_the_checks(handbook_kb: Path) -> None:
    # No reward model: the bundled model answers 3 times and the verifiable checks choose.
    result = CliRunner().invoke(app, ["ask", "How long must passwords be?", "--kb", str(handbook_kb), "--best-of",
                                      "3", "--reward", "checks", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    scores = [c["score"] for c in answer["best_of"]["candidates"]]
    assert len(scores) == 3 and answer["best_of"]["chosen"] == scores.index(max(scores))
    assert answer["best_of"]["candidates"][answer["best_of"]["chosen"]]["answer"] == answer["answer"]


@pytest.mark.e2e
def test_flag_and_recipe_errors_exit_cleanly(tmp_path: Path, handbook_kb: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["ask", "q", "--kb", str(tmp_path / "kb"), "--best-of", "4", "--json"])
    assert result.exit_code == 1 and "--reward RUN" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["ask", "q", "--kb", str(handbook_kb), "--best-of", "2", "--reward",
                                 str(tmp_path / "runs" / "nope"), "--json"])
    assert result.exit_code == 1 and "--reward checks" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["train", "grpo", str(ROOT / "recipes" / "grpo.toml"), "--set", "rl.algorithm=a2c",
                                 "--json"])
    assert result.exit_code == 1 and "rl.algorithm" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["train", "grpo", str(ROOT / "recipes" / "reward.toml"), "--json"])
    assert result.exit_code == 1 and "ragtune train reward" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["train", "grpo", "--set", f"data.path={DATA / 'handbook-rl.jsonl'}",
                                 "--set", "rewards.reward_model=1.0", "--json"])
    assert result.exit_code == 1 and "rewards.model is not set" in json.loads(result.stdout)["error"]
