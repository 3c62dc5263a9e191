"""Train a cross-encoder reranker on (query, positive, hard negatives) with sentence-transformers.

No pretrained cross-encoder ships in any package, so ragtune trains its own: an encoder (the bundled
all-MiniLM-L6-v2 by default, or any HF encoder) gets a one-logit head and learns binary relevance on
positives and retriever-mined hard negatives (binary cross-entropy, positives up-weighted by the number
of negatives). A dev set of queries with their first-stage candidates selects the best checkpoint and
stops training early. The output is a plain sentence-transformers CrossEncoder directory that
``rerank = "cross-encoder:DIR"`` loads.

A recipe (TOML, validated like the other trainers') names the data — a BEIR data set's qrels or a JSONL of
pairs, resolved against a knowledge base — and the training; :func:`run_reranker_recipe` runs the whole
pipeline: index the corpus when needed, split the queries, mine hard negatives, train.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.errors import ConfigError
from ragtune.evaluate.beir import BeirDataset
from ragtune.jsonl import write_jsonl
from ragtune.train.negatives import TrainingPair, Triplet, mine_hard_negatives, read_pairs
from ragtune.train.recipe import RECIPE_PATH, RecipeError, RecipeSection, read_recipe_data, validate_recipe
from ragtune.train.run import ENCODER_ADVICE, guarded, resumable_checkpoints, run_encoder_training, step_plan

log = logging.getLogger(__name__)

#: A progress callback: (stage, done, total).
StageProgress = Callable[[str, int, int], None]


class RerankerModelSection(RecipeSection):
    """The encoder to start from."""

    base_model: str = Field(default="all-MiniLM-L6-v2", description="Encoder to start from: the bundled MiniLM, an HF "
                            "directory, or an existing cross-encoder to fine-tune further.")
    max_length: int = Field(default=384, gt=8, description="Tokens of query + passage the model reads.")


class RerankerDataSection(RecipeSection):
    """Where the training pairs come from: exactly one of ``beir`` or ``pairs``, resolved in the knowledge base."""

    kb: str = Field(default="", description="Knowledge base whose retriever mines the negatives (unset: $RAGTUNE_KB "
                    "or ./ragtune_kb); built from the BEIR corpus when it is empty.", json_schema_extra=RECIPE_PATH)
    beir: str = Field(default="", description="A BEIR-layout directory: train on its qrels.",
                      json_schema_extra=RECIPE_PATH)
    split: str = Field(default="train", description="BEIR qrels split to train on.")
    heldout: float = Field(default=0.2, ge=0, lt=1, description="Share of BEIR queries held out for evaluation "
                           "(their ids are saved in the output directory).")
    dev: float = Field(default=0.1, ge=0, lt=1, description="Share of queries used for early stopping.")
    pairs: str = Field(default="", description='JSONL of {"query", "positive"} (or "chunk_id"/"document_id") pairs.',
                       json_schema_extra=RECIPE_PATH)
    negatives: int = Field(default=4, gt=0, description="Hard negatives used per query.")


class RerankerTrainSection(RecipeSection):
    """Optimisation, evaluation and checkpointing. Defaults were chosen on SciFact (see bench/train_reranker.py)."""

    epochs: float = Field(default=2.0, gt=0, description="Passes over the training triplets.")
    batch_size: int = Field(default=32, gt=0, description="(query, passage) pairs per step.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Peak learning rate (linear decay after warm-up).")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    evals_per_epoch: int = Field(default=2, gt=0, description="Dev evaluations (and checkpoints) per epoch.")
    patience: int = Field(default=2, ge=1, description="Evaluations without dev improvement before stopping early.")
    seed: int = Field(default=42, description="Random seed for the head's initialisation and data order.")
    num_threads: int | None = Field(default=None, gt=0, description="CPU threads for torch (None: torch's default).")


class RerankerOutputSection(RecipeSection):
    """Where the model goes."""

    dir: str = Field(default="", description="Directory for the trained cross-encoder (required).")


class RerankerRecipe(RecipeSection):
    """A complete reranker recipe: one TOML file, every field optional with the defaults above."""

    model: RerankerModelSection = Field(default_factory=RerankerModelSection)
    data: RerankerDataSection = Field(default_factory=RerankerDataSection)
    train: RerankerTrainSection = Field(default_factory=RerankerTrainSection)
    output: RerankerOutputSection = Field(default_factory=RerankerOutputSection)


def load_reranker_recipe(path: str | Path | None, overrides: list[str] | None = None) -> RerankerRecipe:
    """Read ``path`` (None = all defaults), apply ``--set section.field=value`` overrides and validate."""
    data, source = read_recipe_data(path, overrides, RerankerRecipe)
    return validate_recipe(RerankerRecipe, data, source)


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


def run_reranker_recipe(recipe: RerankerRecipe, *, on_progress: StageProgress | None = None) -> dict[str, Any]:
    """The whole pipeline of ``ragtune train reranker``: resolve the training pairs (indexing a BEIR corpus into the
    KB when it is empty, holding out and saving a share of its queries), mine hard negatives with the KB's retriever
    (saved as ``triplets.jsonl``), collect dev samples, train. Returns the run record."""
    from ragtune.kb import KnowledgeBase
    from ragtune.settings import default_kb_path

    data = recipe.data
    if bool(data.beir) == bool(data.pairs):
        raise RecipeError("give exactly one source of training data: data.beir (--beir DIR) or data.pairs "
                          "(--pairs FILE)")
    if not recipe.output.dir:
        raise RecipeError("output.dir is not set — give the directory for the trained model (--out DIR)")
    out = Path(recipe.output.dir)

    def progress(stage: str, done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(stage, done, total)

    with KnowledgeBase.open(Path(data.kb) if data.kb else default_kb_path(), create=bool(data.beir)) as base:
        if data.beir:
            from ragtune.evaluate.beir import load_beir, split_query_ids
            from ragtune.evaluate.retrieval import corpus_documents

            dataset = load_beir(Path(data.beir), data.split)
            name = Path(data.beir).resolve().name
            total = len(dataset.corpus)
            base.ingest_documents(corpus_documents(dataset, name), total=total,
                                  on_progress=lambda p: progress("indexing corpus", p.files_done, total))
            train_ids, dev_ids, heldout_ids = split_query_ids(sorted(dataset.queries), heldout=data.heldout,
                                                              dev=data.dev)
            out.mkdir(parents=True, exist_ok=True)
            (out / "heldout_queries.txt").write_text("\n".join(heldout_ids) + "\n")
            train_pairs, dev_pairs = beir_pairs(dataset, name, train_ids), beir_pairs(dataset, name, dev_ids)
        else:
            all_pairs = read_pairs(data.pairs)
            cut = int(len(all_pairs) * (1 - data.dev))
            train_pairs, dev_pairs = all_pairs[:cut], all_pairs[cut:]
        triplets = mine_hard_negatives(base, train_pairs, n_negatives=data.negatives,
                                       on_progress=lambda done, total: progress("mining hard negatives", done, total))
        write_jsonl(out / "triplets.jsonl", triplets)
        samples = dev_samples(base, dev_pairs)
    return train_reranker(triplets, out, recipe, dev=samples)


def train_reranker(
    triplets: Sequence[Triplet], out_dir: str | Path, recipe: RerankerRecipe | None = None, *,
    dev: Sequence[dict[str, Any]] = (), resume: bool = True,
) -> dict[str, Any]:
    """Train, keep the best dev checkpoint, save it to ``out_dir`` with a ``run.json``; returns the run record.

    Checkpoints go to ``out_dir/checkpoints``; an interrupted run resumes from the last one when ``resume``. A loss
    that turns NaN/inf stops the run with a diagnosis (run.json records it as diverged).
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

    train, negatives = recipe.train, recipe.data.negatives
    if train.num_threads:
        torch.set_num_threads(train.num_threads)
    set_seed(train.seed)
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for t in triplets:
        rows["query"].append(t.query)
        rows["passage"].append(t.positive)
        rows["label"].append(1.0)
        for negative in t.negatives[:negatives]:
            rows["query"].append(t.query)
            rows["passage"].append(negative)
            rows["label"].append(0.0)
    dataset = Dataset.from_dict(rows).shuffle(seed=train.seed)
    base = resolve_model(recipe.model.base_model)
    try:
        # Master weights in fp32 whatever the checkpoint's dtype; on a GPU, bf16 autocast does the speed-up.
        model = CrossEncoder(base, num_labels=1, max_length=recipe.model.max_length,
                             model_kwargs={"dtype": torch.float32}, device=None if cuda else "cpu")
    except OSError as exc:
        raise ConfigError(f"cannot load base model '{recipe.model.base_model}': {exc} — give a local HF directory "
                          "(nothing is downloaded at run time)") from exc
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(negatives)))

    evaluator = None
    before: dict[str, float] = {}
    if dev:
        evaluator = CrossEncoderRerankingEvaluator(
            samples=list(dev), at_k=10, always_rerank_positives=False, name="dev", batch_size=64, write_csv=False
        )
        before = {k: round(float(v), 4) for k, v in evaluator(model).items()}
        log.info("dev before training: %s", before)
    eval_steps, warmup_steps = step_plan(len(dataset), train.batch_size, train.epochs, train.warmup_ratio,
                                         train.evals_per_epoch)
    metric = "eval_dev_ndcg@10"
    args = CrossEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=train.learning_rate,
        warmup_steps=warmup_steps,
        weight_decay=train.weight_decay,
        seed=train.seed,
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
        bf16=bf16,
        dataloader_num_workers=0,
    )
    trainer = guarded(CrossEncoderTrainer, ENCODER_ADVICE)(
        model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=train.patience)] if dev else [],
    )
    checkpoints = resumable_checkpoints(out / "checkpoints", {**recipe.model_dump(), "pairs": len(dataset)}, resume)
    return run_encoder_training(
        trainer, out, kind="reranker", method="cross-encoder", base_model=base, recipe=recipe.model_dump(),
        data={"triplets": len(triplets), "pairs": len(dataset), "dev_queries": len(dev)}, bf16=bf16,
        resume_from=checkpoints[-1] if checkpoints else None, measure="dev", before=before,
        evaluate=lambda: {k: round(float(v), 4) for k, v in evaluator(model).items()} if evaluator else {},
        save=lambda: model.save_pretrained(str(out)),
    )
