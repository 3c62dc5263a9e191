"""Train a cross-encoder reranker on (query, positive, hard negatives) with sentence-transformers.

No pretrained cross-encoder ships in any package, so ragtune trains its own: an encoder (the bundled
all-MiniLM-L6-v2 by default, or any HF encoder) gets a one-logit head and learns binary relevance on
positives and retriever-mined hard negatives (binary cross-entropy, positives up-weighted by the number
of negatives). A dev set of queries with their first-stage candidates selects the best checkpoint and
stops training early. The output is a plain sentence-transformers CrossEncoder directory that
``rerank = "cross-encoder:DIR"`` loads.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragtune.errors import ConfigError
from ragtune.evaluate.beir import BeirDataset
from ragtune.train.negatives import TrainingPair, Triplet
from ragtune.train.run import RUN_FILE, resumable_checkpoints, step_plan, versions

log = logging.getLogger(__name__)

class RerankerRecipe(BaseModel):
    """How to train a reranker. Defaults were chosen on SciFact (see bench/train_reranker.py)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(default="all-MiniLM-L6-v2", description="Encoder to start from: the bundled MiniLM, an HF "
                            "directory, or an existing cross-encoder to fine-tune further.")
    epochs: float = Field(default=2.0, gt=0, description="Passes over the training triplets.")
    batch_size: int = Field(default=32, gt=0, description="(query, passage) pairs per step.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Peak learning rate (linear decay after warm-up).")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    max_length: int = Field(default=384, gt=8, description="Tokens of query + passage the model reads.")
    negatives: int = Field(default=4, gt=0, description="Hard negatives used per query.")
    evals_per_epoch: int = Field(default=2, gt=0, description="Dev evaluations (and checkpoints) per epoch.")
    patience: int = Field(default=2, ge=1, description="Evaluations without dev improvement before stopping early.")
    seed: int = Field(default=42, description="Random seed for the head's initialisation and data order.")
    num_threads: int | None = Field(default=None, gt=0, description="CPU threads for torch (None: torch's default).")


def beir_pairs(dataset: BeirDataset, name: str, query_ids: Sequence[str]) -> list[TrainingPair]:
    """Training pairs from BEIR qrels: each query's positives are its relevant documents' chunks in a KB
    built by ``ragtune eval retrieval`` (document URIs ``beir:<name>/<doc id>``)."""
    from ragtune.ingest import document_id

    pairs = []
    for qid in query_ids:
        relevant = [d for d, grade in dataset.qrels.get(qid, {}).items() if grade > 0]
        if relevant:
            pairs.append(TrainingPair(dataset.queries[qid], query_id=qid,
                                      document_ids=tuple(document_id(f"beir:{name}/{d}") for d in relevant)))
    return pairs


def dev_samples(kb: Any, pairs: Sequence[TrainingPair], *, candidates: int = 30) -> list[dict[str, Any]]:
    """Reranking samples for early stopping: each dev query with its first-stage candidates (chunk texts)
    and which of them are positive (chunks of the query's relevant documents)."""
    samples = []
    for pair in pairs:
        hits = kb.retrieve(pair.query, candidates, mode="hybrid", rewrite="none", rerank=False).hits
        positives = [h.text for h in hits if h.document_id in pair.document_ids or h.chunk_id in pair.chunk_ids
                     or (pair.positive and h.text == pair.positive)]
        if positives:
            samples.append({"query": pair.query, "positive": positives, "documents": [h.text for h in hits]})
    return samples


def train_reranker(
    triplets: Sequence[Triplet], out_dir: str | Path, recipe: RerankerRecipe | None = None, *,
    dev: Sequence[dict[str, Any]] = (), resume: bool = True,
) -> dict[str, Any]:
    """Train, keep the best dev checkpoint, save it to ``out_dir`` with a ``run.json``; returns the run record.

    Checkpoints go to ``out_dir/checkpoints``; an interrupted run resumes from the last one when ``resume``.
    """
    recipe = recipe or RerankerRecipe()
    if not triplets:
        raise ConfigError("no training triplets — mine some with hard negatives first (see 'ragtune train "
                          "reranker --help')")
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import EarlyStoppingCallback, set_seed

    from ragtune.embed.sentence_transformers import resolve_model

    if recipe.num_threads:
        torch.set_num_threads(recipe.num_threads)
    set_seed(recipe.seed)
    cuda = torch.cuda.is_available()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for t in triplets:
        rows["query"].append(t.query)
        rows["passage"].append(t.positive)
        rows["label"].append(1.0)
        for negative in t.negatives[: recipe.negatives]:
            rows["query"].append(t.query)
            rows["passage"].append(negative)
            rows["label"].append(0.0)
    dataset = Dataset.from_dict(rows).shuffle(seed=recipe.seed)
    base = resolve_model(recipe.base_model)
    try:
        # Master weights in fp32 whatever the checkpoint's dtype; on a GPU, bf16 autocast does the speed-up.
        model = CrossEncoder(base, num_labels=1, max_length=recipe.max_length, model_kwargs={"dtype": torch.float32},
                             device=None if cuda else "cpu")
    except OSError as exc:
        raise ConfigError(f"cannot load base model '{recipe.base_model}': {exc} — give a local HF directory "
                          "(nothing is downloaded at run time)") from exc
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(recipe.negatives)))

    evaluator = None
    before: dict[str, float] = {}
    if dev:
        evaluator = CrossEncoderRerankingEvaluator(
            samples=list(dev), at_k=10, always_rerank_positives=False, name="dev", batch_size=64, write_csv=False
        )
        before = {k: round(float(v), 4) for k, v in evaluator(model).items()}
        log.info("dev before training: %s", before)
    eval_steps, warmup_steps = step_plan(len(dataset), recipe.batch_size, recipe.epochs, recipe.warmup_ratio,
                                         recipe.evals_per_epoch)
    metric = "eval_dev_ndcg@10"
    args = CrossEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=recipe.learning_rate,
        warmup_steps=warmup_steps,
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
        eval_strategy="steps" if dev else "no",
        eval_steps=eval_steps if dev else None,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=bool(dev),
        metric_for_best_model=metric if dev else None,
        greater_is_better=True,
        logging_steps=max(1, eval_steps // 4),
        report_to=[],
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=recipe.patience)] if dev else [],
    )
    checkpoints = resumable_checkpoints(out / "checkpoints", {**recipe.model_dump(), "pairs": len(dataset)}, resume)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    seconds = time.perf_counter() - started
    after = {k: round(float(v), 4) for k, v in evaluator(model).items()} if evaluator else {}
    model.save_pretrained(str(out))
    history = [{k: v for k, v in entry.items() if isinstance(v, (int, float))} for entry in trainer.state.log_history]
    run = {
        "kind": "reranker",
        "recipe": recipe.model_dump(),
        "base_model": base,
        "triplets": len(triplets),
        "pairs": len(dataset),
        "dev_queries": len(dev),
        "steps": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_seconds": round(seconds, 1),
        "dev_before": before,
        "dev_after": after,
        "history": history,
        "versions": versions("sentence-transformers"),
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    return run
