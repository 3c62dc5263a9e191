"""The loop's LLM stage on the handbook examples (EN + ZH) with the bundled SmolLM2: a scripted user asks 25
questions in three phrasings each (75 events), then asks them again (150 events in all) and rates every answer
(👍, 👎, corrections citing the source); `loop init` holds out 30 % of the rated answers plus unanswerable probes
as the frozen eval set; `loop run` trains a LoRA adapter on RAFT rows and the gate compares it with the bundled
model (answer correctness, citation precision, refusal accuracy, faithfulness; paired bootstrap CIs). Then a
second batch whose corrections are all deliberately wrong: its challenger must be rejected.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/loop_llm.py

Resumable: every step is recorded in ``--work``/bench.json; `loop run` resumes itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, loadavg, machine, write_json  # noqa: E402
from loop_handbook_user import ITEMS, ask_and_rate  # noqa: E402

from ragtune.feedback import FeedbackStore  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "handbook"
RECIPE = """# bench/loop_llm.py: the LLM stage alone, on the handbook with the bundled SmolLM2.
[evalset]
feedback_share = 0.3
unanswerable = 0.15
seed = 0

[embedder]
enabled = false

[demonstrations]
enabled = false

[llm]
enabled = true
method = "sft"
distractors = 4
from_up = true
epochs = 2
learning_rate = 2e-4
batch_size = 4
grad_accum = 2
max_seq_len = 768
min_examples = 20

[llm.gate]
target = "answer_correctness"

[llm.gate.guards]
refusal_accuracy = 0.01
citation_precision = 0.01
faithfulness = 0.01
latency_p95 = 0.10
peak_rss = 0.10

[measure]
latency_questions = 20
rss_questions = 3
"""


def loop_cli(kb: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-m", "ragtune", "loop", *args, "--kb", str(kb), "--json"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"ragtune loop {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.kb_path = self.work / "kb"
        self.state_path = self.work / "bench.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def step(self, key: str, action: Any) -> Any:
        if key not in self.state:
            started = time.perf_counter()
            self.state[key] = {"value": action(), "seconds": round(time.perf_counter() - started, 1),
                               "loadavg": loadavg()}
            self.state_path.write_text(json.dumps(self.state, indent=2, ensure_ascii=False) + "\n")
            print(key, json.dumps(self.state[key], ensure_ascii=False)[:600], flush=True)
        return self.state[key]["value"]

    def build(self) -> dict[str, Any]:
        shutil.rmtree(self.kb_path, ignore_errors=True)
        with KnowledgeBase.open(self.kb_path, create=True) as kb:
            report = kb.ingest([EXAMPLES])
            return {"ingest": report.to_dict(), "stats": kb.stats(), "llm": kb.settings.llm,
                    "llm_model": kb.llm.name}

    def feedback(self, rounds: int, *, poison: bool, tag: str) -> dict[str, int]:
        """Every item in each phrasing, ``rounds`` times over (a second round is the same user asking again)."""
        counts = {"up": 0, "correction": 0, "down": 0}
        with KnowledgeBase.open(self.kb_path) as kb, FeedbackStore(self.kb_path) as store:
            for _ in range(rounds):
                for item in ITEMS:
                    for question in item.phrasings:
                        counts[ask_and_rate(kb, store, question, item, poison=poison)] += 1
        print(tag, counts, flush=True)
        return counts

    def main(self) -> None:
        started = time.perf_counter()
        self.step("build", self.build)
        self.step("feedback_good", lambda: self.feedback(2, poison=False, tag="good"))
        recipe = self.work / "loop.toml"
        recipe.write_text(RECIPE)
        self.step("init", lambda: loop_cli(self.kb_path, "init", "--recipe", str(recipe))["evalset"])
        good = self.step("run_good", lambda: loop_cli(self.kb_path, "run"))
        self.step("feedback_poisoned", lambda: self.feedback(1, poison=True, tag="poisoned"))
        poisoned = self.step("run_poisoned", lambda: loop_cli(self.kb_path, "run"))
        history = loop_cli(self.kb_path, "history")
        decisions = [h for h in history if h.get("kind") == "decision"]
        write_json(self.args.out, {
            "what": "ragtune loop, LLM stage (RAFT SFT LoRA on the bundled SmolLM2-135M), handbook EN+ZH, scripted "
                    "user; the second batch's corrections are all wrong (poisoned)",
            "commands": ["ragtune loop init --kb KB --recipe loop.toml", "ragtune loop run --kb KB",
                         "(poisoned feedback)", "ragtune loop run --kb KB"],
            "recipe": RECIPE, "build": self.state["build"], "init": self.state["init"],
            "events": {"good": self.state["feedback_good"], "poisoned": self.state["feedback_poisoned"]},
            "runs": {"good": self._summary(good, self.state["run_good"]),
                     "poisoned": self._summary(poisoned, self.state["run_poisoned"])},
            "decisions": [{k: d.get(k) for k in ("run", "verdict", "why", "champion", "challenger", "target",
                                                 "guards", "comparison", "metrics", "data", "seconds")}
                          for d in decisions],
            "bench_wall_s": round(time.perf_counter() - started, 1), "loadavg": loadavg(), "machine": machine(),
        })

    @staticmethod
    def _summary(run: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
        phase = run["phases"]["llm"]
        return {"run": run["run"], "outcome": phase.get("outcome"), "why": phase.get("verdict", {}).get("reasons"),
                "rows": phase.get("rows"), "hygiene": phase.get("hygiene"), "seconds_by_phase": phase.get("seconds"),
                "wall_s": step["seconds"], "loadavg": step["loadavg"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ragtune-loop-bench/llm"))
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "loop_llm.json")
    Bench(ap.parse_args()).main()


if __name__ == "__main__":
    main()
