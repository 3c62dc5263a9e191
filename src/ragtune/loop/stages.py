"""The loop's stages: how each turns new rated answers into a challenger, serves it for measurement without
changing what serves, makes a version serve (promotion and rollback) and drops a rejected one.

A stage's *serving value* is what decides its part of the answers: the embedder the KB's vectors were made with
(and the refusal threshold calibrated for it), the ``rerank`` setting, the ``llm_adapter`` setting, the
``demonstrations`` setting. Every version records its serving value; the champion is the version whose value
serves now, so the champion is read from what serves, never from a record that a crash could leave behind.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.demonstrations import Demonstration, read_demonstrations, write_demonstrations
from ragtune.embed import checkpoint_hash
from ragtune.errors import ConfigError
from ragtune.feedback import FeedbackRecord
from ragtune.jsonl import read_jsonl, write_jsonl
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.loop import datasets
from ragtune.loop.evaluation import Variant
from ragtune.loop.hygiene import Redactor
from ragtune.loop.recipe import EmbedderStage, LlmStage, LoopRecipe, RerankerStage
from ragtune.loop.workspace import Workspace
from ragtune.train.negatives import TrainingPair, Triplet, mine_hard_negatives, read_triplets

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


@dataclass
class StageRun:
    """What a stage works with during one run."""

    kb: Any
    workspace: Workspace
    recipe: LoopRecipe
    directory: Path  # this run's folder for this stage
    progress: ProgressFn
    redactor: Redactor


@dataclass(frozen=True)
class Dataset:
    """How hygiene reads one of a stage's datasets: a row's question, and what makes two rows the same."""

    name: str
    question: Callable[[dict[str, Any]], str]
    key: Callable[[dict[str, Any]], str]


class Stage:
    """The interface every stage follows (see the module docstring)."""

    name = ""
    #: The path the stage changes, for latency: 'retrieve' or 'answer'.
    latency_path = "retrieve"
    datasets: tuple[Dataset, ...] = ()

    def serving(self, kb: Any, workspace: Workspace) -> dict[str, Any]:
        raise NotImplementedError

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        return a == b

    def rows(self, run: StageRun, records: Sequence[FeedbackRecord]) -> dict[str, list[dict[str, Any]]]:
        raise NotImplementedError

    def train(self, run: StageRun, version_dir: Path, data: dict[str, Path], champion: dict[str, Any]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Train the challenger into ``version_dir``; returns (its serving value, what training recorded)."""
        raise NotImplementedError

    def prepare(self, run: StageRun, challenger: dict[str, Any], data: dict[str, Path]) -> dict[str, Any]:
        """Make the challenger measurable (an embedder's vectors staged); returns its completed serving value."""
        return challenger

    def variant(self, value: dict[str, Any], label: str, *, live: bool) -> Variant:
        """The measurement variant of a serving value; ``live``: it is what serves now."""
        return Variant(label, {} if live else dict(value))

    def apply(self, kb: Any, workspace: Workspace, value: dict[str, Any], progress: ProgressFn) -> None:
        """Make ``value`` serve, atomically."""
        workspace.set_serving(dict(value))

    def discard(self, kb: Any, challenger: dict[str, Any]) -> None:
        """Drop what a rejected challenger left beside the live data (nothing, for most stages)."""

    def waived_guards(self, champion: dict[str, Any], challenger: dict[str, Any]) -> dict[str, str]:
        """Guards that do not compare like with like for this pair, and why (reported, not gated)."""
        return {}


def finished_training(model_dir: Path) -> dict[str, Any] | None:
    """The run record of a training that finished in ``model_dir`` before an interruption (None: train)."""
    from ragtune.train.run import RUN_FILE, read_run

    if not (model_dir / RUN_FILE).is_file():
        return None
    record = read_run(model_dir)
    return record if record.get("status") == "finished" else None


def _pairs_dataset() -> Dataset:
    return Dataset("pairs", lambda r: str(r["query"]), lambda r: f"{r['query']}\n{r['positive']}")


def _training_pairs(path: Path) -> list[TrainingPair]:
    return [TrainingPair(str(r["query"]), str(r["positive"]), query_id=f"f{r.get('feedback_id', '')}",
                         chunk_ids=(str(r["chunk_id"]),) if r.get("chunk_id") else ())
            for _, r in read_jsonl(path, what="training pairs")]


def _mine(run: StageRun, pairs: Sequence[TrainingPair], negatives: int, label: str) -> list[Triplet]:
    """Hard negatives from the live retriever (the champion's), redacted like every row the loop writes; a pair
    left without one still trains, with in-batch negatives. Written to the run's triplets.jsonl, which a resumed
    run reads instead of mining again."""
    saved = run.directory / "triplets.jsonl"
    if saved.is_file():
        return read_triplets(saved)
    mined = mine_hard_negatives(run.kb, pairs, n_negatives=negatives, rank_window=(3, 30),
                                on_progress=lambda done, total: run.progress(label, done, total)) if negatives else []
    kept = {(t.query, t.positive) for t in mined}
    triplets = [*mined, *(Triplet(p.query, p.positive, [], "feedback", p.query_id) for p in pairs
                          if (p.query, p.positive) not in kept)]
    if run.recipe.data.pii:
        for t in triplets:
            t.negatives[:] = [run.redactor.value(n) for n in t.negatives]
    write_jsonl(saved, triplets)
    return triplets


class EmbedderStageRunner(Stage):
    """Fine-tunes the champion embedder further on (question, cited chunk) pairs with mined hard negatives; the
    challenger's vectors are staged beside the live ones ('kb reembed''s path) and swapped in on promotion."""

    name = "embedder"
    datasets = (_pairs_dataset(),)

    def config(self, recipe: LoopRecipe) -> EmbedderStage:
        return recipe.embedder

    def serving(self, kb: Any, workspace: Workspace) -> dict[str, Any]:
        return {"embedder": kb.settings.embedder, "checkpoint": kb.store.checkpoint,
                "refusal_threshold": workspace.serving().get("refusal_threshold")}

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        if a.get("checkpoint") and b.get("checkpoint"):
            return bool(a["checkpoint"] == b["checkpoint"])
        return bool(a.get("embedder") == b.get("embedder"))

    def rows(self, run: StageRun, records: Sequence[FeedbackRecord]) -> dict[str, list[dict[str, Any]]]:
        return {"pairs": datasets.retrieval_pairs(records)}

    def train(self, run: StageRun, version_dir: Path, data: dict[str, Path], champion: dict[str, Any]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        from ragtune.train.embedder import EmbedderRecipe, train_embedder

        cfg = self.config(run.recipe)
        triplets = _mine(run, _training_pairs(data["pairs"]), cfg.negatives, "mining hard negatives")
        model_dir = version_dir / "model"
        recipe = EmbedderRecipe.model_validate({
            "model": {"base_model": run.kb.settings.embedder},
            "data": {"triplets": [str(run.directory / "triplets.jsonl")], "negatives": max(cfg.negatives, 1),
                     "eval_split": cfg.eval_split},
            "train": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
                      "seed": cfg.seed, "num_threads": run.kb.settings.num_threads},
            "output": {"dir": str(model_dir), "report_to": []},
        })
        record = finished_training(model_dir)
        if record is None:
            run.progress("training the embedder", 0, 1)
            record = train_embedder(recipe, resume=True)
        value = {"embedder": str(model_dir.resolve()), "checkpoint": checkpoint_hash(str(model_dir.resolve()))}
        return value, {"triplets": len(triplets), "with_negatives": sum(bool(t.negatives) for t in triplets),
                       "metrics": record.get("metrics", {}), "base_model": run.kb.settings.embedder}

    def prepare(self, run: StageRun, challenger: dict[str, Any], data: dict[str, Path]) -> dict[str, Any]:
        from ragtune.train.adapt import StagedStore, candidate_embedder

        kb = run.kb
        staged = kb.reembed(challenger["embedder"], swap=False,
                            on_progress=lambda done, total: run.progress("encoding with the challenger", done, total))
        questions = [p.query for p in _training_pairs(data["pairs"])][:200]
        ids, vectors = kb.store.staged_vectors()
        candidate = candidate_embedder(kb, Path(challenger["embedder"]), staged.get("precision"))
        threshold = calibrate_refusal(
            champion_threshold(kb), _top_scores(kb.store, kb.embedder, questions),
            _top_scores(StagedStore(kb.store, ids, vectors), candidate, questions))
        return {**challenger, "precision": staged.get("precision"), "refusal_threshold": threshold}

    def variant(self, value: dict[str, Any], label: str, *, live: bool) -> Variant:
        if live:
            return Variant(label)
        settings = {"refusal_threshold": value["refusal_threshold"]} if value.get("refusal_threshold") else {}
        return Variant(label, settings, staged_embedder=value["embedder"], precision=value.get("precision"))

    def apply(self, kb: Any, workspace: Workspace, value: dict[str, Any], progress: ProgressFn) -> None:
        if not self.same(self.serving(kb, workspace), value):
            # Staged vectors of this model are swapped in without encoding again; others are encoded first.
            kb.reembed(value["embedder"], on_progress=lambda done, total: progress("re-encoding the KB", done, total))
        workspace.set_serving({"refusal_threshold": value.get("refusal_threshold")})

    def discard(self, kb: Any, challenger: dict[str, Any]) -> None:
        pending = kb.store.reembed_pending()
        if pending is not None and pending.get("embedder") == challenger.get("embedder"):
            kb.store.cancel_reembed()


def champion_threshold(kb: Any) -> float | None:
    """The refusal threshold the answer pipeline applies with the KB's embedder (the setting, else its
    calibrated default); None when there is none."""
    from ragtune.rag.pipeline import REFUSAL_GATES

    if kb.settings.refusal_threshold is not None:
        return float(kb.settings.refusal_threshold)
    gate = REFUSAL_GATES.get(kb.embedder.name)
    return float(gate[0]) if gate else None


def _top_scores(store: Any, embedder: Any, questions: Sequence[str]) -> list[float]:
    if not questions:
        return []
    vectors = embedder.encode_queries(list(questions))
    return [hits[0][1] for hits in (store.dense_search(v, 1) for v in vectors) if hits]


def calibrate_refusal(threshold: float | None, champion: Sequence[float], challenger: Sequence[float]
                      ) -> float | None:
    """The challenger's refusal threshold: the dense-score gate moved to the same place in the challenger's score
    distribution. Over the same questions, the share of best-hit scores below the champion's threshold is kept
    (the quantile of the challenger's scores at that share); when no score falls below it, the threshold is scaled
    by the ratio of the two distributions' 5th percentiles. None when the champion has no threshold."""
    if threshold is None or not champion or not challenger:
        return threshold
    share = float(np.mean(np.asarray(champion) < threshold))
    if 0 < share < 1:
        return round(float(np.quantile(challenger, share)), 4)
    low_champion, low_challenger = np.percentile(champion, 5), np.percentile(challenger, 5)
    if low_champion <= 0:
        return threshold
    return round(float(threshold * low_challenger / low_champion), 4)


class RerankerStageRunner(Stage):
    """Trains a cross-encoder ('train reranker') on the same pairs, from the champion reranker when there is one."""

    name = "reranker"
    datasets = (_pairs_dataset(),)

    def config(self, recipe: LoopRecipe) -> RerankerStage:
        return recipe.reranker

    def serving(self, kb: Any, workspace: Workspace) -> dict[str, Any]:
        return {"rerank": kb.settings.rerank}

    def waived_guards(self, champion: dict[str, Any], challenger: dict[str, Any]) -> dict[str, str]:
        if champion.get("rerank"):
            return {}
        return {"latency_p95": "the first reranker adds a model to every query, so its latency is reported, not "
                               "gated (a reranker replacing a reranker is held to the tolerance)"}

    def rows(self, run: StageRun, records: Sequence[FeedbackRecord]) -> dict[str, list[dict[str, Any]]]:
        return {"pairs": datasets.retrieval_pairs(records)}

    def train(self, run: StageRun, version_dir: Path, data: dict[str, Path], champion: dict[str, Any]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        from ragtune.train.reranker import RerankerRecipe, dev_samples, train_reranker

        cfg = self.config(run.recipe)
        pairs = _training_pairs(data["pairs"])
        queries = sorted({p.query for p in pairs})
        random.Random(cfg.seed).shuffle(queries)
        dev_queries = set(queries[: round(len(queries) * cfg.dev)]) if len(queries) >= 10 else set()
        train_pairs = [p for p in pairs if p.query not in dev_queries]
        triplets = _mine(run, train_pairs, cfg.negatives, "mining hard negatives")
        triplets = [t for t in triplets if t.negatives]
        if not triplets:
            raise ConfigError("no pair found a hard negative in the knowledge base — the reranker needs negatives; "
                              "ingest more documents or wait for more feedback")
        dev = dev_samples(run.kb, [p for p in pairs if p.query in dev_queries])
        spec = str(champion.get("rerank") or "")
        base = spec.split(":", 1)[1] if spec.startswith("cross-encoder:") else cfg.base_model
        model_dir = version_dir / "model"
        recipe = RerankerRecipe.model_validate({
            "model": {"base_model": base},
            "data": {"negatives": cfg.negatives},
            "train": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
                      "seed": cfg.seed, "num_threads": run.kb.settings.num_threads},
            "output": {"dir": str(model_dir)},
        })
        record = finished_training(model_dir)
        if record is None:
            run.progress("training the reranker", 0, 1)
            record = train_reranker(triplets, model_dir, recipe, dev=dev)
        return ({"rerank": f"cross-encoder:{model_dir.resolve()}"},
                {"triplets": len(triplets), "dev_queries": len(dev), "base_model": base,
                 "metrics": record.get("metrics", {})})


class LlmStageRunner(Stage):
    """A LoRA adapter on the answering model, trained afresh on the rows of every promoted LLM version plus the
    new ones: RAFT rows (SFT) or feedback rows (DPO, KTO)."""

    name = "llm"
    latency_path = "answer"

    def config(self, recipe: LoopRecipe) -> LlmStage:
        return recipe.llm

    @property
    def datasets(self) -> tuple[Dataset, ...]:  # type: ignore[override]
        return (Dataset("sft", lambda r: str(r["question"]), lambda r: f"{r['question']}\n{r['messages'][-1]}"),
                Dataset("preference", lambda r: str(r["question"]),
                        lambda r: f"{r['question']}\n{r['answer']}\n{r.get('corrected_answer', '')}\n{r['rating']}"))

    def serving(self, kb: Any, workspace: Workspace) -> dict[str, Any]:
        return {"llm_adapter": kb.settings.llm_adapter}

    def rows(self, run: StageRun, records: Sequence[FeedbackRecord]) -> dict[str, list[dict[str, Any]]]:
        cfg = self.config(run.recipe)
        if run.kb.settings.llm != "local":
            raise ConfigError(f"the llm stage trains LoRA adapters, which only the 'local' backend serves, but this KB "
                              f"answers with llm = '{run.kb.settings.llm}' — disable [llm] in the loop recipe, or "
                              "answer with llm = 'local'")
        if cfg.method == "sft":
            return {"sft": datasets.raft_rows(run.kb, records, distractors=cfg.distractors, from_up=cfg.from_up,
                                               seed=cfg.seed)}
        return {"preference": datasets.preference_rows(records, cfg.method)}

    def train(self, run: StageRun, version_dir: Path, data: dict[str, Path], champion: dict[str, Any]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        from ragtune.train.preference import train_preference
        from ragtune.train.recipe import Recipe
        from ragtune.train.sft import train_sft

        cfg = self.config(run.recipe)
        name = "sft" if cfg.method == "sft" else "preference"
        rows = [row for _, row in read_jsonl(data[name])]
        inherited = self._lineage(run.workspace, champion, name)
        combined = version_dir / "train.jsonl"
        write_jsonl(combined, [*inherited, *rows])
        model_dir = version_dir / "model"
        recipe = Recipe.model_validate({
            "method": cfg.method,
            "model": {"name": run.kb.settings.llm_model or BUNDLED_SMOLLM2, "finetune": "lora"},
            "lora": {"r": cfg.lora_r, "alpha": 2 * cfg.lora_r},
            "data": {"path": str(combined), "format": "messages" if name == "sft" else "feedback",
                     "eval_split": 0.0, "max_seq_len": cfg.max_seq_len},
            "train": {"epochs": cfg.epochs, "learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size,
                      "grad_accum": cfg.grad_accum, "seed": cfg.seed, "early_stopping_patience": 0,
                      "logging_steps": 5, "save_total_limit": 1},
            "output": {"dir": str(model_dir), "report_to": []},
        })
        record = finished_training(model_dir)
        if record is None:
            resume = model_dir.is_dir() and any(model_dir.glob("checkpoint-*"))
            run.progress("training the LLM adapter", 0, 1)
            record = (train_sft if name == "sft" else train_preference)(recipe, resume=resume)
        return ({"llm_adapter": str(model_dir.resolve())},
                {"rows": len(rows), "inherited_rows": len(inherited), "method": cfg.method,
                 "metrics": record.get("metrics", {})})

    def _lineage(self, workspace: Workspace, champion: dict[str, Any], name: str) -> list[dict[str, Any]]:
        """The training rows of the champion adapter (each version keeps all of its own), if the loop made it."""
        adapter = champion.get("llm_adapter")
        for version in workspace.versions(self.name):
            if adapter and version.get("serving", {}).get("llm_adapter") == adapter:
                path = Path(version["path"]) / "train.jsonl"
                if path.is_file() and version.get("dataset") == name:
                    return [row for _, row in read_jsonl(path)]
        return []


class DemonstrationsStageRunner(Stage):
    """No training: cited 👍 answers join the champion's worked examples; the set serves as the
    ``demonstrations`` setting."""

    name = "demonstrations"
    latency_path = "answer"
    datasets = (Dataset("demonstrations", lambda r: str(r["question"]), lambda r: str(r["question"])),)

    def serving(self, kb: Any, workspace: Workspace) -> dict[str, Any]:
        return {"demonstrations": kb.settings.demonstrations, "demonstrations_k": kb.settings.demonstrations_k}

    def rows(self, run: StageRun, records: Sequence[FeedbackRecord]) -> dict[str, list[dict[str, Any]]]:
        return {"demonstrations": [d.to_dict() for d in datasets.demonstrations(records)]}

    def train(self, run: StageRun, version_dir: Path, data: dict[str, Path], champion: dict[str, Any]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        new = [Demonstration(**row) for _, row in read_jsonl(data["demonstrations"])]
        old: list[Demonstration] = []
        if champion.get("demonstrations") and Path(champion["demonstrations"]).is_file():
            old = read_demonstrations(champion["demonstrations"])
        merged = datasets.merge_demonstrations(old, new)
        path = version_dir / "demonstrations.jsonl"
        write_demonstrations(path, merged)
        value = {"demonstrations": str(path.resolve()), "demonstrations_k": run.recipe.demonstrations.k}
        return value, {"new": len(new), "inherited": len(old), "total": len(merged)}


STAGE_RUNNERS: dict[str, Stage] = {runner.name: runner for runner in (
    EmbedderStageRunner(), RerankerStageRunner(), LlmStageRunner(), DemonstrationsStageRunner())}
