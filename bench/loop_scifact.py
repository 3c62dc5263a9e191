"""The loop on SciFact's retrieval stages: the train-split qrels arrive as 👍 feedback in three batches, then a
fourth batch with shuffled labels. After each `ragtune loop run`: each stage's verdict, its gate numbers on the
frozen eval set, nDCG@10 on the held-out queries for champion and challenger, and the wall time of the turn.

The split is bench/results/scifact_split/: dev queries (90) are rated before `loop init` and become the frozen eval
set (feedback_share = 1); train queries (567 ids, those with train qrels) are the three batches; held-out queries
(152) are only ever measured here, never seen by the loop. A rated answer cites the chunk of a relevant document
that the serving retriever ranks highest (its first chunk when none is retrieved).

Cheap by design: the SciFact KB is built once (``--work``/base) and copied; the cross-encoder reranks 20
candidates of 256 tokens (int8 ONNX); one epoch per turn. Resumable: every step is recorded in ``--work``/bench.json
and `loop run` resumes itself; run it again after an interruption.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/loop_scifact.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, default_scifact_dir, loadavg, machine, write_json  # noqa: E402

from ragtune.evaluate.beir import load_beir  # noqa: E402
from ragtune.evaluate.ir import evaluate  # noqa: E402
from ragtune.evaluate.retrieval import corpus_documents  # noqa: E402
from ragtune.feedback import FeedbackStore  # noqa: E402
from ragtune.ingest import document_id  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.loop.evaluation import Variant, open_variant  # noqa: E402
from ragtune.types import Answer, Citation  # noqa: E402

SPLIT_DIR = RESULTS_DIR / "scifact_split"
KB_SETTINGS = "rerank_candidates = 20\nrerank_max_length = 256\n"
RECIPE = """# bench/loop_scifact.py: SciFact's retrieval stages. No LLM answers are measured (SciFact has no reference
# answers and the eval set holds no unanswerable probes), so the gate's guards are the system costs.
[evalset]
feedback_share = 1.0      # the dev queries rated before init are the frozen eval set
unanswerable = 0.0

[embedder]
enabled = true
min_examples = 50
negatives = 2
epochs = 1
batch_size = 32

[embedder.gate]
target = "ndcg@10"
guards = { latency_p95 = 0.10, peak_rss = 0.10 }

[reranker]
enabled = true
min_examples = 50
negatives = 4
epochs = 1
batch_size = 32

[reranker.gate]
target = "ndcg@10"
guards = { latency_p95 = 0.10, peak_rss = 0.10 }

[demonstrations]
enabled = false
"""


def qrels_of(dataset: Any, qid: str) -> list[str]:
    return [d for d, grade in dataset.qrels.get(qid, {}).items() if grade > 0]


def rate(kb: KnowledgeBase, store: FeedbackStore, question: str, docs: list[str], answer_id: str, name: str) -> bool:
    """Record an answer citing the best-ranked chunk of ``docs`` and rate it 👍 (False when no chunk exists)."""
    wanted = {document_id(f"beir:{name}/{d}") for d in docs}
    hits = kb.retrieve(question, 30, rewrite="none", rerank=False).hits
    gold = next((h for h in hits if h.document_id in wanted), None)
    if gold is None:
        chunks = [c for d in sorted(wanted) for c in kb.store.document_chunks(d)]
        if not chunks:
            return False
        gold = chunks[0]
    others = [h for h in hits if h.chunk_id != gold.chunk_id][:2]
    sentence = gold.text.split(". ")[0].rstrip(".")
    answer = Answer(id=answer_id, question=question, answer=f"{sentence} [1].", grounded=True,
                    citations=[Citation(number=1, chunk_id=gold.chunk_id, document_id=gold.document_id,
                                        source=gold.source)], sources=[gold, *others])
    store.record_answer(answer)
    store.add(answer_id, "up")
    return True


def heldout_ndcg(kb: Any, dataset: Any, ids: list[str], prefix: str) -> float:
    """Document-level nDCG@10 (BEIR) of the KB as it serves (hybrid, its reranker) on the held-out queries."""
    run: dict[str, dict[str, float]] = {}
    for qid in ids:
        ranked: dict[str, float] = {}
        for hit in kb.retrieve(dataset.queries[qid], 30, rewrite="none").hits:
            doc = hit.source.removeprefix(prefix)
            if doc not in ranked:
                ranked[doc] = 1.0 / (len(ranked) + 1)
        run[qid] = ranked
    return round(evaluate(run, {q: dataset.qrels[q] for q in ids}, ["ndcg_cut_10"])["ndcg_cut_10"], 4)


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
        self.state_path = self.work / "bench.json"
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.dataset = load_beir(args.beir, "train")
        self.name = args.beir.resolve().name
        self.prefix = f"beir:{self.name}/"
        self.parts = {p: (SPLIT_DIR / f"{p}_queries.txt").read_text().split() for p in ("train", "dev", "heldout")}
        self.kb_path = self.work / "kb"

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=2) + "\n")

    def step(self, key: str, action: Any) -> Any:
        if key not in self.state:
            started = time.perf_counter()
            value = action()
            self.state[key] = {"value": value, "seconds": round(time.perf_counter() - started, 1),
                               "loadavg": loadavg()}
            self.save()
            print(key, json.dumps(self.state[key])[:400], flush=True)
        return self.state[key]["value"]

    def build_base(self) -> dict[str, Any]:
        base = self.work / "base"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        (base / "ragtune.toml").write_text(KB_SETTINGS)
        with KnowledgeBase.open(base, create=True) as kb:
            report = kb.ingest_documents(corpus_documents(self.dataset, self.name), total=len(self.dataset.corpus))
            return {"ingest": report.to_dict(), "stats": kb.stats(), "embedder": kb.settings.embedder,
                    "precision": kb.settings.embed_precision}

    def copy_base(self) -> str:
        shutil.rmtree(self.kb_path, ignore_errors=True)
        shutil.copytree(self.work / "base", self.kb_path)
        return str(self.kb_path)

    def feedback(self, queries: list[str], tag: str, *, shuffled: bool = False) -> dict[str, int]:
        """Rate an answer for each query; ``shuffled``: each query cites the gold of another query."""
        golds = [qrels_of(self.dataset, q) for q in queries]
        if shuffled:
            order = list(range(len(queries)))
            rng = random.Random(7)
            while any(i == j for i, j in enumerate(order)):
                rng.shuffle(order)
            golds = [golds[j] for j in order]
        rated = 0
        with KnowledgeBase.open(self.kb_path) as kb, FeedbackStore(self.kb_path) as store:
            for n, (qid, docs) in enumerate(zip(queries, golds, strict=True)):
                if docs and rate(kb, store, self.dataset.queries[qid], docs, f"{tag}-{n}-{qid}", self.name):
                    rated += 1
        return {"queries": len(queries), "rated": rated}

    def heldout(self, variant: dict[str, Any] | None = None, stage_value: dict[str, Any] | None = None) -> float:
        with KnowledgeBase.open(self.kb_path) as kb:
            if variant is None:
                return heldout_ndcg(kb, self.dataset, self.parts["heldout"], self.prefix)
            if stage_value is not None:  # a rejected embedder: stage its vectors again to measure it
                kb.reembed(stage_value["embedder"], swap=False)
            try:
                with open_variant(kb, Variant.from_dict(variant)) as served:
                    return heldout_ndcg(served, self.dataset, self.parts["heldout"], self.prefix)
            finally:
                if stage_value is not None:
                    kb.store.cancel_reembed()

    def turn(self, number: int, queries: list[str], *, shuffled: bool) -> dict[str, Any]:
        key = f"turn{number}"
        self.step(f"{key}.feedback", lambda: self.feedback(queries, f"b{number}", shuffled=shuffled))
        before = self.step(f"{key}.heldout_before", self.heldout)
        run = self.step(f"{key}.run", lambda: loop_cli(self.kb_path, "run"))
        status = loop_cli(self.kb_path, "status")
        result: dict[str, Any] = {
            "batch": number, "shuffled_labels": shuffled, "feedback": self.state[f"{key}.feedback"]["value"],
            "run": run["run"], "wall_s": self.state[f"{key}.run"]["seconds"],
            "loadavg": self.state[f"{key}.run"]["loadavg"], "heldout_serving_before": before, "stages": {}}
        # The system each stage was measured in: the embedder stage with the reranker serving at the start,
        # the reranker stage with the embedder serving after the embedder stage.
        serving = before
        for stage in run["stages"]:
            record = run["phases"][stage]
            verdict = record.get("verdict", {})
            entry: dict[str, Any] = {"outcome": record.get("outcome"), "why": verdict.get("reasons"),
                                     "champion": record.get("champion"), "challenger": record.get("challenger"),
                                     "gate_target": verdict.get("target"), "guards": verdict.get("guards"),
                                     "seconds": record.get("seconds"), "rows": record.get("rows"),
                                     "hygiene": record.get("hygiene")}
            if record.get("challenger"):
                entry["heldout_ndcg10"] = self.step(
                    f"{key}.{stage}.heldout", lambda s=stage, r=record, b=serving: self.stage_heldout(s, r, b))
                if record.get("outcome") == "promoted":
                    serving = entry["heldout_ndcg10"]["challenger"]
            result["stages"][stage] = entry
        result["heldout_serving_after"] = serving
        result["champions_after"] = {s: v["champion"] for s, v in status["stages"].items()}
        return result

    def stage_heldout(self, stage: str, record: dict[str, Any], before: float) -> dict[str, float]:
        """Held-out nDCG@10 of the system with the stage's champion (``before``: as measured) and with its
        challenger in its place."""
        versions = self.kb_path / "loop" / "versions" / stage
        challenger = json.loads((versions / record["challenger"] / "version.json").read_text())["serving"]
        if stage == "embedder":
            settings = {"rerank": self.state.get("rerank_serving")}
            if record.get("outcome") == "promoted":
                after = self.heldout({"label": "challenger", "settings": settings})
            else:
                after = self.heldout({"label": "challenger", "settings": settings,
                                      "staged_embedder": challenger["embedder"],
                                      "precision": challenger.get("precision")}, challenger)
            return {"champion": before, "challenger": after}
        return {"champion": before,
                "challenger": self.heldout({"label": "challenger", "settings": {"rerank": challenger.get("rerank")}})}

    def main(self) -> None:
        started = time.perf_counter()
        self.step("build", self.build_base)
        self.step("copy", self.copy_base)
        self.step("dev_feedback", lambda: self.feedback(self.parts["dev"], "dev"))
        recipe = self.work / "loop.toml"
        recipe.write_text(RECIPE)
        self.step("init", lambda: loop_cli(self.kb_path, "init", "--recipe", str(recipe))["evalset"])
        train = [q for q in self.parts["train"] if qrels_of(self.dataset, q)]
        random.Random(0).shuffle(train)
        size = -(-len(train) // 3)
        batches = [train[i * size : (i + 1) * size] for i in range(3)]
        turns = []
        for number in range(1, 5):
            with KnowledgeBase.open(self.kb_path) as kb:
                self.state["rerank_serving"] = kb.settings.rerank
            shuffled = number == 4
            turns.append(self.turn(number, batches[0] if shuffled else batches[number - 1], shuffled=shuffled))
            self.save()
            write_json(self.args.out, self.report(turns, started))
        with KnowledgeBase.open(self.kb_path) as kb:
            verify = kb.verify()
        write_json(self.args.out, {**self.report(turns, started), "kb_verify": verify})

    def report(self, turns: list[dict[str, Any]], started: float) -> dict[str, Any]:
        return {
            "what": "ragtune loop on SciFact's retrieval stages (embedder, reranker): train-split qrels as 👍 feedback "
                    "in 3 batches, then a 4th batch with shuffled labels; dev queries = the frozen eval set; "
                    "held-out queries measured here only",
            "commands": ["ragtune loop init --kb KB --recipe loop.toml", "ragtune loop run --kb KB (per turn)"],
            "recipe": RECIPE, "kb_settings": KB_SETTINGS,
            "build": self.state.get("build"), "init": self.state.get("init"),
            "dev_feedback": self.state.get("dev_feedback", {}).get("value"),
            "heldout_queries": len(self.parts["heldout"]), "turns": turns,
            "bench_wall_s": round(time.perf_counter() - started, 1), "loadavg": loadavg(), "machine": machine(),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=default_scifact_dir())
    ap.add_argument("--work", type=Path, default=Path("/tmp/ragtune-loop-bench/scifact"))
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "loop_scifact.json")
    Bench(ap.parse_args()).main()


if __name__ == "__main__":
    main()
