"""Label-free adaptation of a knowledge base: its embedder fine-tuned on questions written for its own chunks.

One call runs what ``data synth-queries``, ``data mine-negatives``, ``train embedder`` and ``kb reembed`` do by
hand: questions from a random sample of the KB's chunks (round-trip filtered), hard negatives mined by the KB's
retriever, a fine-tuned embedder, and the new vectors staged beside the live ones. Both embedders are judged on
held-out synthetic questions (never trained on); the KB switches only when the new one retrieves their chunks
better. Every phase leaves its result in the work folder (``KB/adapt``), LLM replies are cached and training
checkpoints, so an interrupted run resumes; a time budget decides how many chunks get questions and how long
training runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.embed.bf16 import BF16_MIN_TEXTS
from ragtune.errors import ConfigError
from ragtune.evaluate.ir import evaluate
from ragtune.files import atomic_write_json
from ragtune.jsonl import write_jsonl
from ragtune.retrieve import HybridRetriever
from ragtune.train.negatives import TrainingPair, Triplet, mine_hard_negatives, read_triplets
from ragtune.train.synthetic import SyntheticQuery, knowledge_base_chunks, synth_queries

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
WORK_DIR = "adapt"
STATE_FILE = "adapt.json"
METRICS = ("ndcg_cut_10", "recip_rank_10", "recall_10")
#: A training step's cost in document encodings per row of the batch (see ``plan``).
STEP_ENCODINGS_PER_ROW = 36


@dataclass(frozen=True)
class AdaptConfig:
    """What ``adapt_knowledge_base`` does; the budget sets the chunks asked about and the training length."""

    budget_minutes: float = 60.0
    per_chunk: int = 2
    heldout_share: float = 0.2
    negatives: int = 2
    rank_window: tuple[int, int] = (3, 30)
    margin: float = 0.95
    batch_size: int = 32
    learning_rate: float = 2e-5
    max_epochs: float = 3.0
    min_gain: float = 0.005  # held-out nDCG@10 the new embedder must add before the KB switches
    max_chunks: int = 0  # 0: as many as the budget allows
    seed: int = 0

    def __post_init__(self) -> None:
        if self.budget_minutes <= 0:
            raise ConfigError("the budget must be a positive number of minutes.")
        if not 0 < self.heldout_share < 1:
            raise ConfigError(f"heldout_share must be in (0, 1), got {self.heldout_share}")
        if self.per_chunk <= 0 or self.negatives <= 0 or self.batch_size <= 1:
            raise ConfigError("per_chunk and negatives must be > 0 and batch_size > 1.")


@dataclass
class AdaptPlan:
    """How the budget is spent, from throughput measured at the start (seconds)."""

    chunks: int
    embed_seconds_per_chunk: float
    reembed_seconds: float
    question_seconds: float
    train_seconds: float
    step_seconds: float


def plan(config: AdaptConfig, total_chunks: int, embed_seconds_per_chunk: float) -> AdaptPlan:
    """Split the budget: re-encoding the KB once is a fixed cost; what is left goes half to writing questions,
    half to training. A training step costs about 36 document encodings per row of the batch (query, positive
    and two negatives, forward and backward in fp32 torch, evaluations included, against the KB's int8 or bf16
    encoding: 13.4 s per step of 32 rows against 12.2 ms per int8 chunk on the 2-core CPU of
    bench/adapt_scifact.py; the estimate of 12 this replaces planned 3x too many steps). The estimate sets the
    epochs; the time limit given to training keeps the budget whatever the estimate."""
    budget = config.budget_minutes * 60
    reembed = total_chunks * embed_seconds_per_chunk * 1.1 + 60
    left = budget - reembed
    if left < 120:
        need = (reembed + 120) / 60
        raise ConfigError(f"a budget of {config.budget_minutes:g} minutes is too small: re-encoding the KB's "
                          f"{total_chunks} chunks alone takes about {reembed / 60:.0f} minutes — give --budget "
                          f"{need:.0f} or more")
    chunks = total_chunks if not config.max_chunks else min(total_chunks, config.max_chunks)
    return AdaptPlan(chunks=chunks, embed_seconds_per_chunk=embed_seconds_per_chunk, reembed_seconds=reembed,
                     question_seconds=left * 0.5, train_seconds=left * 0.45,
                     step_seconds=STEP_ENCODINGS_PER_ROW * config.batch_size * embed_seconds_per_chunk)


class _State:
    """The work folder's record of finished phases, so a re-run resumes after the last one."""

    def __init__(self, directory: Path, key: str, *, reset: bool = False) -> None:
        self.path = directory / STATE_FILE
        data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() and not reset else {}
        self.data: dict[str, Any] = data if data.get("key") == key else {"key": key}

    def done(self, phase: str) -> bool:
        return phase in self.data

    def save(self, phase: str, value: Any) -> None:
        self.data[phase] = value
        atomic_write_json(self.path, self.data)  # a crash mid-write must not lose the finished phases


def adapt_knowledge_base(
    kb: Any, config: AdaptConfig | None = None, *, work_dir: str | Path | None = None, fresh: bool = False,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Adapt ``kb``'s embedder to its own chunks without labels (see the module docstring). Returns the report
    (also in ``work_dir/adapt.json``): questions, held-out metrics before and after, timings, and whether the
    KB was re-embedded. A finished run is only reported again; ``fresh`` starts another round (from the KB's
    current embedder, into a new model folder)."""
    config = config or AdaptConfig()
    work = Path(work_dir) if work_dir else kb.path / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    # A run with other settings starts over; the LLM's replies stay cached in the KB, so questions cost nothing.
    key = hashlib.sha256(json.dumps(asdict(config), default=str).encode()).hexdigest()[:16]
    state = _State(work, key)
    if fresh or not state.done("model_dir"):
        # Never the folder of a model the KB may already use: an earlier round's model stays where it is.
        rounds = 1 + sum(1 for _ in work.glob("embedder*"))
        state = _State(work, key, reset=True)
        state.save("model_dir", str(work / ("embedder" if rounds == 1 else f"embedder-{rounds}")))
        for name in ("questions.jsonl", "triplets.jsonl"):
            (work / name).unlink(missing_ok=True)
    if state.done("decision"):
        return _report(state, work)
    started = time.monotonic()
    progress = on_progress or (lambda stage, done, total: None)
    timings: dict[str, float] = state.data.get("timings", {})

    chunks = list(knowledge_base_chunks(kb))
    if len(chunks) < 10:
        raise ConfigError(f"{kb.path} has {len(chunks)} chunks; adaptation needs a knowledge base of at least 10 — "
                          "ingest more documents first")
    if not state.done("plan"):
        # Encoded once untimed first: a batch as large as re-encoding will make loads what re-encoding runs on
        # (bf16 on an AMX CPU, see embed.bf16), and the timed 16 chunks then measure that.
        kb.embedder.encode_documents([c.text for c in chunks[:BF16_MIN_TEXTS]])
        sample = chunks[: min(len(chunks), 16)]
        t = time.perf_counter()
        kb.embedder.encode_documents([c.text for c in sample])
        per_chunk = (time.perf_counter() - t) / len(sample)
        state.save("plan", asdict(plan(config, len(chunks), per_chunk)))
    budget = AdaptPlan(**state.data["plan"])

    if not state.done("questions"):
        t = time.perf_counter()
        order = list(chunks)
        random.Random(config.seed).shuffle(order)
        deadline = time.monotonic() + budget.question_seconds
        questions, synth = synth_queries(
            kb, per_chunk=config.per_chunk, chunks=order[: budget.chunks], deadline=deadline,
            on_progress=lambda done, total: progress("writing questions", done, total),
        )
        write_jsonl(work / "questions.jsonl", questions)
        timings["questions"] = round(time.perf_counter() - t, 1)
        state.save("questions", {**synth.to_dict(), "failed_chunks": len(synth.failed_chunks)})
        state.save("timings", timings)
    questions = [SyntheticQuery(**row) for row in _read_rows(work / "questions.jsonl")]
    train_q, heldout_q = _split(questions, config.heldout_share, config.seed)
    if len(train_q) < config.batch_size or len(heldout_q) < 5:
        raise ConfigError(
            f"only {len(questions)} synthetic questions survived the round trip ({len(train_q)} to train on, "
            f"{len(heldout_q)} held out) — give a larger --budget, or check the LLM (--llm-model)"
        )

    if not state.done("negatives"):
        t = time.perf_counter()
        pairs = [TrainingPair(q.query, q.positive, query_id=q.chunk_id, chunk_ids=(q.chunk_id,),
                              document_ids=(q.document_id,)) for q in train_q]
        triplets = mine_hard_negatives(kb, pairs, n_negatives=config.negatives, rank_window=config.rank_window,
                                       margin=config.margin,
                                       on_progress=lambda done, total: progress("mining negatives", done, total))
        # Queries without a usable negative still train with in-batch negatives.
        kept = {tr.query for tr in triplets}
        triplets += [Triplet(q.query, q.positive, [], "synthetic", q.chunk_id) for q in train_q if q.query not in kept]
        write_jsonl(work / "triplets.jsonl", triplets)
        timings["negatives"] = round(time.perf_counter() - t, 1)
        state.save("negatives", {"triplets": len(triplets), "with_negatives": len(kept)})
        state.save("timings", timings)

    if not state.done("before"):
        progress("judging the current embedder", 0, len(heldout_q))
        state.save("before", _judge(kb.retriever(rerank=False), heldout_q))

    model_dir = Path(state.data["model_dir"])
    if not state.done("train"):
        t = time.perf_counter()
        state.save("train", _train(kb, config, budget, work / "triplets.jsonl", model_dir))
        timings["train"] = round(time.perf_counter() - t, 1)
        state.save("timings", timings)

    if not state.done("after"):
        t = time.perf_counter()
        staged = kb.reembed(str(model_dir), swap=False,
                            on_progress=lambda done, total: progress("encoding with the new embedder", done, total))
        ids, vectors = kb.store.staged_vectors()
        candidate = StagedStore(kb.store, ids, vectors)
        s = kb.settings
        retriever = HybridRetriever(
            candidate, candidate_embedder(kb, model_dir, staged.get("precision")),  # type: ignore[arg-type]
            candidates=s.candidates, dense_weight=s.dense_weight, sparse_weight=s.sparse_weight, rrf_k=s.rrf_k,
            fusion=s.fusion, document_weight=s.document_weight,
        )
        progress("judging the new embedder", 0, len(heldout_q))
        state.save("after", _judge(retriever, heldout_q))
        timings["encode"] = round(time.perf_counter() - t, 1)
        state.save("timings", timings)

    gain = state.data["after"]["ndcg_cut_10"] - state.data["before"]["ndcg_cut_10"]
    better = gain >= config.min_gain
    if not state.done("decision"):
        if better:
            swapped = kb.reembed(str(model_dir))
            state.save("decision", {"reembedded": True, "embedder": swapped["embedder"],
                                    "precision": swapped.get("precision"), "chunks": swapped["chunks"]})
        else:
            kb.store.cancel_reembed()
            state.save("decision", {"reembedded": False, "embedder": kb.settings.embedder})
    timings["total_last_run"] = round(time.monotonic() - started, 1)
    state.save("timings", timings)
    state.save("summary", {"gain": round(gain, 4), "heldout_questions": len(heldout_q),
                           "train_questions": len(train_q)})
    log.info("adaptation: held-out nDCG@10 %.4f → %.4f (%s)", state.data["before"]["ndcg_cut_10"],
             state.data["after"]["ndcg_cut_10"], "re-embedded" if better else "kept the current embedder")
    return _report(state, work)


def _report(state: _State, work: Path) -> dict[str, Any]:
    return {**{k: v for k, v in state.data.items() if k not in ("key", "summary")}, **state.data["summary"],
            "work_dir": str(work)}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    from ragtune.jsonl import read_jsonl

    return [row for _, row in read_jsonl(path, what="questions")]


def _split(questions: list[SyntheticQuery], share: float, seed: int) -> tuple[list[SyntheticQuery],
                                                                                list[SyntheticQuery]]:
    """Held out by chunk, so no held-out question's passage is ever a training positive."""
    chunk_ids = sorted({q.chunk_id for q in questions})
    random.Random(seed).shuffle(chunk_ids)
    held = set(chunk_ids[: max(1, round(len(chunk_ids) * share))])
    return [q for q in questions if q.chunk_id not in held], [q for q in questions if q.chunk_id in held]


def _judge(retriever: HybridRetriever, questions: list[SyntheticQuery]) -> dict[str, float]:
    """nDCG@10, MRR@10 and Recall@10 of hybrid retrieval with each question's own chunk as its one answer."""
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for n, q in enumerate(questions):
        qid = f"q{n}"
        hits = retriever.search(q.query, 10, mode="hybrid").hits
        run[qid] = {h.chunk_id: 1.0 / (rank + 1) for rank, h in enumerate(hits)}
        qrels[qid] = {q.chunk_id: 1}
    return {k: round(v, 4) for k, v in evaluate(run, qrels, METRICS).items()}


def _train(kb: Any, config: AdaptConfig, budget: AdaptPlan, triplets: Path, out: Path) -> dict[str, Any]:
    from ragtune.train.embedder import EmbedderRecipe, train_embedder

    rows = sum(max(1, min(config.negatives, len(t.negatives))) for t in read_triplets(triplets))
    steps_per_epoch = max(1, rows // config.batch_size)
    epochs = min(config.max_epochs, max(0.25, budget.train_seconds / (budget.step_seconds * steps_per_epoch)))
    recipe = EmbedderRecipe.model_validate({
        "model": {"base_model": kb.settings.embedder},
        "data": {"triplets": [str(triplets)], "negatives": config.negatives, "eval_split": 0.1},
        "train": {"epochs": round(epochs, 3), "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                  "seed": config.seed, "num_threads": kb.settings.num_threads,
                  "max_minutes": round(budget.train_seconds / 60, 2)},
        "output": {"dir": str(out), "report_to": []},
    })
    metrics = train_embedder(recipe, resume=True)["metrics"]
    return {"epochs": round(epochs, 3), "steps": metrics["global_step"], "rows": rows,
            "train_seconds": metrics["train_seconds"],
            "stopped_by_time_limit_at_step": metrics.get("stopped_by_time_limit_at_step"),
            "dev_before": metrics["heldout_before"].get("heldout_cosine_ndcg@10"),
            "dev_after": metrics["heldout_after"].get("heldout_cosine_ndcg@10")}


def candidate_embedder(kb: Any, model_dir: Path, precision: str | None) -> Any:
    """The embedder of ``model_dir`` loaded as ``kb`` would load it (batch size, threads, backend), at the
    precision its staged vectors were made with."""
    from ragtune.embed import load_embedder

    s = kb.settings
    return load_embedder(str(model_dir.resolve()), batch_size=s.embed_batch_size, num_threads=s.num_threads,
                         backend=s.embed_backend, precision=precision or "auto", device=s.embed_device)


class StagedStore:
    """The KB's store with dense search over the staged (not yet live) vectors: exact, in memory. Everything else
    (sparse search, chunk texts) is the live store's; a candidate embedder is judged through it before any
    vector it made is live."""

    def __init__(self, store: Any, ids: list[int], vectors: np.ndarray) -> None:
        self.store = store
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = vectors

    def dense_search(self, vector: np.ndarray, k: int, filter: Any = None) -> list[tuple[int, float]]:
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        allowed = self.store.allowed_ids(filter) if filter else None
        if allowed is not None:  # the filter (and access groups) as the live store applies them
            scores = np.where(np.isin(self.ids, np.fromiter(allowed, dtype=np.int64)), scores, -np.inf)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(self.ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)
