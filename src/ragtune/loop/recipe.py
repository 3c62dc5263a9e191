"""The loop's recipe: which stages run, how each trains, and what the gate asks of a challenger (validated TOML)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ragtune.errors import ConfigError
from ragtune.train.recipe import RecipeSection, read_recipe_data, validate_recipe

STAGES: tuple[str, ...] = ("embedder", "reranker", "llm", "demonstrations")
Stage = Literal["embedder", "reranker", "llm", "demonstrations"]

#: Metrics measured on the retrieval ranking of each eval question (against its gold chunks).
RETRIEVAL_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "mrr@10", "ndcg@5", "recall@5", "recall@20")
#: Metrics of the serving process as a whole: a challenger may cost at most ``tolerance`` more, as a share.
SYSTEM_METRICS: tuple[str, ...] = ("latency_p95", "peak_rss")
#: Metrics where less is better (every other one: more is better).
LOWER_IS_BETTER = frozenset({"latency_p95", "peak_rss", "false_refusal_rate"})


def _answer_metrics() -> tuple[str, ...]:
    from ragtune.evaluate import METRICS

    return tuple(METRICS)


def metric_kind(name: str) -> str:
    """'retrieval', 'answer' or 'system' — how a gate metric is measured."""
    if name in RETRIEVAL_METRICS:
        return "retrieval"
    if name in SYSTEM_METRICS:
        return "system"
    if name in _answer_metrics():
        return "answer"
    raise ConfigError(f"unknown gate metric {name!r} — use one of {', '.join(RETRIEVAL_METRICS + SYSTEM_METRICS)} "
                      f"or an answer metric of 'ragtune eval rag' ({', '.join(_answer_metrics())})")


def default_guards() -> dict[str, float]:
    """The issue's defaults: answer quality may not drop by more than one point, cost not rise by more than 10 %."""
    return {"refusal_accuracy": 0.01, "citation_precision": 0.01, "faithfulness": 0.01, "latency_p95": 0.10,
            "peak_rss": 0.10}


class GateSection(RecipeSection):
    """What a challenger must show to replace its champion (each stage sets its own target and guards)."""

    target: str = Field(default="ndcg@10", description="The metric that must improve: the lower bound of the paired "
                        "bootstrap CI of (challenger - champion) over the eval set must be above zero.")
    min_gain: float = Field(
        default=0.0, ge=-1, le=1,
        description="The CI's lower bound must also exceed this (points). Negative = a non-inferiority margin: a "
        "challenger passes when it is reliably no worse than that (e.g. -0.01 to adopt a smaller or faster model "
        "that loses at most a point); the guards still apply.")
    guards: dict[str, float] = Field(
        default_factory=default_guards, description="Metric = tolerance: answer and retrieval metrics may not drop "
        "by more than tolerance points (0.01 = one point); latency_p95 and peak_rss may not rise by more than "
        "tolerance as a share (0.10 = 10 %). An empty table switches the guards off.")

    @field_validator("target")
    @classmethod
    def _known_target(cls, value: str) -> str:
        if metric_kind(value) == "system":
            raise ValueError(f"{value} cannot be a target (it has no per-question scores) — use it as a guard")
        return value

    @field_validator("guards")
    @classmethod
    def _known_guards(cls, value: dict[str, float]) -> dict[str, float]:
        for name, tolerance in value.items():
            metric_kind(name)
            if tolerance < 0:
                raise ValueError(f"guard {name}: tolerance must be >= 0, got {tolerance}")
        return value


class StageSection(RecipeSection):
    """What every stage has: on or off, the least new data worth a run, and its gate."""

    enabled: bool = Field(default=False, description="Run this stage in 'ragtune loop run'.")
    min_examples: int = Field(default=20, ge=1, description="New training rows this stage needs before it trains; "
                              "with fewer it waits (the feedback stays new for it).")
    seed: int = Field(default=42, description="Seed of training and of every random choice of the stage.")
    gate: GateSection = Field(default_factory=GateSection)


class EmbedderStage(StageSection):
    """(question, cited chunk) pairs with hard negatives mined by the KB's retriever; the champion is fine-tuned
    further, the KB re-encoded beside its live vectors, and swapped in by 'kb reembed''s atomic path."""

    negatives: int = Field(default=2, ge=0, description="Hard negatives per pair (ranks 3-30 of the retriever).")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the new pairs.")
    batch_size: int = Field(default=32, gt=1, description="Pairs per step (also in-batch negatives).")
    learning_rate: float = Field(default=2e-5, gt=0, description="Peak learning rate.")
    eval_split: float = Field(default=0.1, ge=0, lt=1, description="Share of the pairs the trainer holds out to "
                              "choose its best checkpoint (never the loop's eval set).")


class RerankerStage(StageSection):
    """The same pairs through 'train reranker': a cross-encoder fine-tuned further from the champion (the bundled
    MiniLM with a new head the first time)."""

    base_model: str = Field(default="all-MiniLM-L6-v2", description="Encoder of the first reranker (later ones "
                            "start from the champion).")
    negatives: int = Field(default=4, gt=0, description="Hard negatives per pair.")
    epochs: float = Field(default=2.0, gt=0, description="Passes over the new pairs.")
    batch_size: int = Field(default=32, gt=1, description="(question, passage) pairs per step.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Peak learning rate.")
    dev: float = Field(default=0.1, ge=0, lt=1, description="Share of the pairs that choose the best checkpoint.")


class LlmStage(StageSection):
    """A LoRA adapter on the answering model: RAFT-style SFT rows (question, the oracle chunk and distractors
    mined by the hybrid retriever, a target citing its source with [n]), or DPO / KTO on the ratings. Each
    challenger is trained afresh on the data of every promoted LLM run plus the new rows."""

    method: Literal["sft", "dpo", "kto"] = Field(default="sft", description="sft = RAFT rows from corrections (and "
                                                 "👍 answers); dpo = correction ≻ original answer; kto = 👍 and "
                                                 "corrections desirable, 👎 undesirable.")
    distractors: int = Field(default=4, ge=0, le=8, description="Distractor chunks beside the oracle in a RAFT row.")
    from_up: bool = Field(default=True, description="Also turn cited 👍 answers into RAFT rows (not only "
                          "corrections).")
    epochs: float = Field(default=2.0, gt=0, description="Passes over the rows.")
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate (LoRA).")
    batch_size: int = Field(default=4, gt=0, description="Rows per device step.")
    grad_accum: int = Field(default=2, gt=0, description="Steps per optimizer update.")
    lora_r: int = Field(default=16, gt=0, description="LoRA rank.")
    max_seq_len: int = Field(default=1024, gt=64, description="Tokens per row (longer rows are cut).")
    gate: GateSection = Field(default_factory=lambda: GateSection(target="answer_correctness"))


class DemonstrationsStage(StageSection):
    """No training: cited 👍 answers become worked examples shown before similar questions."""

    k: int = Field(default=2, ge=1, le=8, description="Worked examples shown with a question at most.")
    min_examples: int = Field(default=5, ge=1, description="New demonstrations needed before a run.")
    gate: GateSection = Field(default_factory=lambda: GateSection(target="answer_correctness"))


class EvalSetSection(RecipeSection):
    """The frozen eval set 'loop init' writes: held-out rated answers, synthetic questions, unanswerable probes."""

    feedback_share: float = Field(default=0.3, ge=0, le=1, description="Share of the rated answers at init that are "
                                  "held out for evaluation (by answer id; they never train).")
    max_feedback: int = Field(default=300, ge=0, description="Held-out rated answers at most.")
    synthetic: int = Field(default=0, ge=0, description="Synthetic questions written by the LLM from chunks "
                           "(round-trip filtered, with grounded references).")
    unanswerable: float = Field(default=0.15, ge=0, lt=1, description="Share of unanswerable probes (questions "
                                "with a name or rare term swapped for one no chunk contains).")
    seed: int = Field(default=0, description="Seed of the held-out split and of the synthetic questions.")


class DataSection(RecipeSection):
    """Hygiene of every dataset the loop writes."""

    pii: bool = Field(default=True, description="Redact personal data (guard/pii.py: e-mail, phone, IBAN, card, "
                      "Chinese and EU ID numbers, addresses) in every row before it is written.")
    pii_kinds: list[str] = Field(default_factory=list, description="Only these kinds ([] = all).")
    carry_inconclusive: bool = Field(
        default=True, description="A challenger rejected only because its gain is not yet reliable (the target's CI "
        "not wholly below zero, no guard broken) leaves its feedback for the next run, which trains on it with what "
        "arrives since, so small batches add up; a challenger that was worse (CI entirely below zero) or broke a "
        "guard uses its feedback up. false = every decided run uses its feedback up.")
    near_duplicate: float = Field(default=0.9, gt=0, le=1, description="Similarity (0-1, edit-distance ratio of the "
                                  "normalised questions) at which a training question counts as an eval question "
                                  "(leakage) or as a repeat.")

    @field_validator("pii_kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        from ragtune.guard.pii import PII_KINDS

        unknown = [k for k in value if k not in PII_KINDS]
        if unknown:
            raise ValueError(f"unknown personal-data kinds {unknown} — use {', '.join(PII_KINDS)}")
        return value


class MeasureSection(RecipeSection):
    """How the gate measures (shared by the stages)."""

    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Confidence of the bootstrap intervals.")
    resamples: int = Field(default=10_000, ge=100, description="Bootstrap resamples.")
    seed: int = Field(default=0, description="Seed of the bootstrap (same data and seed: same verdict).")
    latency_questions: int = Field(default=20, ge=1, description="Eval questions timed (fresh, champion and "
                                   "challenger alternating) for latency_p95 when answers are generated.")
    latency_repeats: int = Field(default=3, ge=1, description="Times each eval question is retrieved by each system "
                                 "(alternating) for latency_p95 of the retrieval stages; the fastest counts, so load "
                                 "from other processes does not decide the guard.")
    rss_questions: int = Field(default=5, ge=1, description="Questions a separate process serves with each system "
                               "to measure its peak RSS.")


class LoopRecipe(RecipeSection):
    """A complete loop recipe: every table optional, with the defaults above."""

    evalset: EvalSetSection = Field(default_factory=EvalSetSection)
    data: DataSection = Field(default_factory=DataSection)
    measure: MeasureSection = Field(default_factory=MeasureSection)
    embedder: EmbedderStage = Field(default_factory=lambda: EmbedderStage(enabled=True))
    reranker: RerankerStage = Field(default_factory=RerankerStage)
    llm: LlmStage = Field(default_factory=LlmStage)
    demonstrations: DemonstrationsStage = Field(default_factory=lambda: DemonstrationsStage(enabled=True))

    @model_validator(mode="after")
    def _some_stage(self) -> LoopRecipe:
        if not self.enabled():
            raise ValueError("no stage is enabled — set enabled = true in at least one of [embedder], [reranker], "
                             "[llm], [demonstrations]")
        return self

    def stage(self, name: str) -> StageSection:
        if name not in STAGES:
            raise ConfigError(f"unknown stage {name!r} — use one of {', '.join(STAGES)}")
        section: StageSection = getattr(self, name)
        return section

    def enabled(self) -> list[str]:
        return [name for name in STAGES if getattr(self, name).enabled]


def load_loop_recipe(path: str | Path | None, overrides: list[str] | None = None) -> LoopRecipe:
    """Read ``path`` (None = the defaults), apply ``--set section.field=value`` overrides and validate."""
    data, source = read_recipe_data(path, overrides, LoopRecipe)
    return validate_recipe(LoopRecipe, data, source)
