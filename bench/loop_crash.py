"""Crash safety of the loop: SIGKILL during training, during re-embedding (staging the challenger's vectors) and
during promotion; after each, the KB must answer with the old champion (same hits for probe questions),
`kb verify` must be ok, and the next `ragtune loop run` must resume the run and finish it with one recorded
decision.

The KB is the handbook examples plus 400 SciFact abstracts (so encoding takes long enough to be interrupted),
rated by a scripted user; the embedder stage trains for two epochs. Promotion is made long by documents
ingested while the run is held just before it measures (a user keeps adding files): the swap must first encode
their chunks. The
promotion scenario's gate has a non-inferiority margin (`min_gain = -1`), so its challenger is promoted whatever it
measures and the kill lands in a real promotion. A rollback's re-encode, the other way a version comes to serve,
is killed too.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/loop_crash.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, write_json  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.retrieval import corpus_documents  # noqa: E402
from ragtune.feedback import FeedbackStore  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.loop.workspace import Workspace  # noqa: E402
from ragtune.types import Answer, Citation  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "handbook"
PROBES = ["How long is the refund window for enterprise customers?", "病假每年最多几天？",
          "What is the hotel limit in Europe?", "How often must API keys be rotated?",
          "Does vitamin D supplementation reduce fractures?"]
QUESTIONS = [
    "How long is the refund window for enterprise customers?", "Who approves refunds above 10,000 EUR?",
    "Where do I send the invoice number for a refund?", "How are refunds paid back?",
    "How long do Starter and Team customers have to ask for a refund?", "How many days of paid annual leave?",
    "病假每年最多几天？", "在哪个系统提交休假申请？", "What is the password policy?", "What happens on the first day?",
    "What is the hotel limit when travelling?", "How are travel expenses reimbursed?",
    "How often must API keys be rotated?", "Where do I report security incidents?", "Which class for short flights?",
    "When must receipts be submitted?", "Who gives new hires their laptop?", "When is the SSO account created?",
]
RECIPE = """[evalset]
feedback_share = 0.25
unanswerable = 0.0
[embedder]
enabled = true
min_examples = 10
negatives = 2
epochs = 3
batch_size = 8
eval_split = 0.0
[embedder.gate]
target = "ndcg@10"
guards = { latency_p95 = 1.0, peak_rss = 0.3 }
[demonstrations]
enabled = false
[measure]
resamples = 2000
rss_questions = 2
"""
#: The promotion scenario's gate: a non-inferiority margin of 100 points, so its run reaches a promotion to kill.
PROMOTING_RECIPE = RECIPE.replace('target = "ndcg@10"\n', 'target = "ndcg@10"\nmin_gain = -1.0\n')


def rate_all(kb: KnowledgeBase, tag: str, questions: list[str]) -> None:
    with FeedbackStore(kb.path) as store:
        for n, question in enumerate(questions):
            hits = kb.retrieve(question, 3).hits
            best = hits[0]
            answer = Answer(id=f"{tag}{n}", question=question, answer=f"{best.text.split('. ')[0]} [1].",
                            grounded=True, sources=hits,
                            citations=[Citation(number=1, chunk_id=best.chunk_id, document_id=best.document_id,
                                                source=best.source)])
            store.record_answer(answer)
            store.add(answer.id, "up")


def snapshot(kb_path: Path) -> dict[str, Any]:
    """What serves: the embedder, the probe questions' hits, and the store's own check."""
    with KnowledgeBase.open(kb_path) as kb:
        return {"embedder": kb.settings.embedder, "checkpoint": kb.store.checkpoint[:12],
                "hits": {q: [h.chunk_id for h in kb.search(q, 5)] for q in PROBES}, "verify": kb.verify()}


def staged(kb_path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{kb_path / 'ragtune.db'}?mode=ro", uri=True)
    try:
        return (conn.execute("SELECT count(*) FROM reembed_vectors").fetchone()[0],
                conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
    finally:
        conn.close()


def phase(kb_path: Path) -> str | None:
    ws = Workspace(kb_path)
    try:
        active = ws.state().get("active_run")
        return ws.run(active)["phases"]["embedder"]["phase"] if active else None
    except (json.JSONDecodeError, KeyError, OSError):
        return None


def command(kb_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.Popen([sys.executable, "-m", "ragtune", "loop", *args, "--kb", str(kb_path), "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 1800) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    return False


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        self.work.mkdir(parents=True, exist_ok=True)
        self.dataset = load_beir(args.beir, "train")

    def documents(self, start: int, count: int) -> list[Any]:
        ids = sorted(self.dataset.corpus)[start : start + count]
        subset = type(self.dataset)(corpus={i: self.dataset.corpus[i] for i in ids}, queries={}, qrels={})
        return list(corpus_documents(subset, "scifact"))

    def base(self) -> Path:
        """The KB with its loop set up (built once)."""
        base = self.work / "base"
        if (base / "loop" / "state.json").is_file():
            return base
        shutil.rmtree(base, ignore_errors=True)
        with KnowledgeBase.open(base, create=True) as kb:
            kb.ingest([EXAMPLES])
            kb.ingest_documents(self.documents(0, self.args.docs), total=self.args.docs)
            rate_all(kb, "a", QUESTIONS)
            rate_all(kb, "b", [f"Please tell me: {q}" for q in QUESTIONS])
            recipe = self.work / "loop.toml"
            recipe.write_text(RECIPE)
            from ragtune.loop import init_loop

            init_loop(kb, recipe)
        return base

    def fresh(self, name: str) -> Path:
        target = self.work / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.base(), target)
        return target

    def check(self, kb_path: Path, before: dict[str, Any], *, killed_at: str) -> dict[str, Any]:
        after = snapshot(kb_path)
        return {"killed_at": killed_at, "embedder_unchanged": after["embedder"] == before["embedder"],
                "same_hits_for_probes": after["hits"] == before["hits"], "kb_verify": after["verify"],
                "loop_status_active_run": Workspace(kb_path).state().get("active_run"),
                "staged_vectors": staged(kb_path)[0]}

    def resume(self, kb_path: Path) -> dict[str, Any]:
        started = time.perf_counter()
        process = command(kb_path, "run")
        out, err = process.communicate()
        if process.returncode != 0:
            return {"ok": False, "error": err[-2000:]}
        run = json.loads(out)
        history = [h for h in Workspace(kb_path).history() if h.get("kind") == "decision"]
        return {"ok": run["status"] == "done", "run": run["run"], "resumed": run.get("resumed"),
                "outcome": run["phases"]["embedder"].get("outcome"),
                "decisions_recorded_for_run": sum(h["run"] == run["run"] for h in history),
                "seconds": round(time.perf_counter() - started, 1), "after": snapshot(kb_path)["verify"]["ok"]}

    def kill_in_run(self, name: str, when: Callable[[Path], bool], label: str,
                    during: Callable[[Path], None] | None = None, delay: float = 0.0,
                    recipe: str | None = None) -> dict[str, Any]:
        kb_path = self.fresh(name)
        if recipe is not None:  # this scenario's gate (the loop reads its kept recipe at every run)
            (kb_path / "loop" / "recipe.toml").write_text(recipe)
        before = snapshot(kb_path)
        process = command(kb_path, "run")
        if during is not None:
            # The run is stopped while the documents go in (SIGSTOP/SIGCONT), so they are there before it
            # promotes and the promotion must encode their chunks: long enough to be killed in, every time.
            wait_for(lambda: phase(kb_path) in ("measure", "decide", "promote", "reject"), process)
            os.kill(process.pid, signal.SIGSTOP)
            try:
                during(kb_path)
                before = snapshot(kb_path)  # what the champion answers with the new documents in
            finally:
                os.kill(process.pid, signal.SIGCONT)
        reached = wait_for(lambda: when(kb_path), process)
        if not reached:
            out, err = process.communicate()
            run = Workspace(kb_path).run("r001")
            return {"reached": False, "outcome": run.get("phases", {}).get("embedder", {}).get("outcome"),
                    "why": run.get("phases", {}).get("embedder", {}).get("verdict", {}).get("reasons"),
                    "stderr": err[-1500:] if process.returncode else ""}
        time.sleep(delay)
        killed_phase = phase(kb_path)
        counts = staged(kb_path)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        result = {"reached": True, **self.check(kb_path, before, killed_at=f"{label} (phase {killed_phase}, staged "
                                                                           f"{counts[0]}/{counts[1]} vectors)")}
        if label == "promotion":
            # Killed mid-promotion the KB serves the old champion or, if the swap had committed, the new one —
            # never a mix: the store's check and the recorded embedder agree.
            after = snapshot(kb_path)
            result["serves"] = "old champion" if after["embedder"] == before["embedder"] else "new champion"
        result["resume"] = self.resume(kb_path)
        return result

    def add_documents(self, kb_path: Path) -> None:
        with KnowledgeBase.open(kb_path) as kb:
            kb.ingest_documents(self.documents(self.args.docs, 300), total=300)

    def kill_in_rollback(self) -> dict[str, Any]:
        """A rollback is a promotion of a kept version through the same path: killed mid-encode, the KB serves
        the old champion; run again, the re-encode resumes and completes."""
        kb_path = self.work / "promotion"
        before = snapshot(kb_path)
        target = "v001" if before["embedder"] == "all-MiniLM-L6-v2" else "v000"
        process = command(kb_path, "rollback", "--stage", "embedder", "--to", target)
        reached = wait_for(lambda: 0 < staged(kb_path)[0] < staged(kb_path)[1] * 0.8, process)
        counts = staged(kb_path)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        result = {"reached": reached, **self.check(kb_path, before, killed_at=f"rollback to {target} (staged "
                                                                              f"{counts[0]}/{counts[1]} vectors)")}
        started = time.perf_counter()
        again = command(kb_path, "rollback", "--stage", "embedder", "--to", target)
        out, err = again.communicate()
        after = snapshot(kb_path)
        result["rerun"] = {"ok": again.returncode == 0, "seconds": round(time.perf_counter() - started, 1),
                           "serves": after["embedder"], "kb_verify": after["verify"]["ok"],
                           "error": err[-1500:] if again.returncode else None}
        return result

    def main(self) -> None:
        started = time.perf_counter()
        self.base()
        results = {
            "training": self.kill_in_run(
                "training", lambda p: phase(p) == "train" and any((p / "loop" / "versions" / "embedder").glob(
                    "v001/model/checkpoints/checkpoint-*")), "training"),
            "reembedding": self.kill_in_run(
                "reembedding", lambda p: phase(p) == "prepare" and 0 < staged(p)[0] < staged(p)[1] * 0.7,
                "re-embedding"),
            # A non-inferiority margin of 100 points: the challenger passes the gate whatever it measures, so
            # this run does reach the promotion it is killed in (the guards still apply).
            "promotion": self.kill_in_run("promotion", lambda p: phase(p) == "promote", "promotion",
                                          during=self.add_documents, delay=1.0, recipe=PROMOTING_RECIPE),
        }
        results["promotion_by_rollback"] = self.kill_in_rollback()
        results["promotion"]["recipe"] = PROMOTING_RECIPE
        write_json(self.args.out, {
            "what": "SIGKILL of 'ragtune loop run' during training, re-embedding and promotion (and of 'ragtune loop "
                    "rollback' mid re-encode); handbook + 400 SciFact abstracts, embedder stage",
            "recipe": RECIPE, "probes": PROBES, "results": results,
            "bench_wall_s": round(time.perf_counter() - started, 1), "loadavg": loadavg(), "machine": machine(),
        })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--work", type=Path, default=Path("/tmp/ragtune-loop-bench/crash"))
    ap.add_argument("--docs", type=int, default=400, help="SciFact abstracts in the KB besides the handbook")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "loop_crash.json")
    Bench(ap.parse_args()).main()


if __name__ == "__main__":
    main()
