"""Best-of-n answering: several answers to one question through the knowledge base's pipeline, the one a reward
model (or the verifiable checks, :func:`checks`) scores highest kept.

The first answer is the pipeline's greedy one, so best-of-n can only replace it with an answer the reward
model prefers; the others are sampled. Every candidate is the pipeline's verified answer (citations checked,
unsupported ones removed, refusals as the user would see them), scored against the sources it was written
from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ragtune.errors import ConfigError
from ragtune.timing import elapsed_ms
from ragtune.train.recipe import RewardsSection
from ragtune.train.rewards import Rewards, Sample, Scorer
from ragtune.types import Answer, embedding_text

#: ``--reward checks``: choose by what ragtune verifies itself instead of a trained reward model.
CHECKS = "checks"


@dataclass
class BestOf:
    """The chosen answer, every candidate with its score (in the order generated), and where the time went."""

    answer: Answer
    candidates: list[tuple[Answer, float]]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def chosen(self) -> int:
        """Index of the chosen answer among the candidates (0 = the greedy answer)."""
        return next(i for i, (a, _) in enumerate(self.candidates) if a is self.answer)


def sample_of(answer: Answer) -> Sample:
    """An answer as a reward sample: its question, its text and the sources it was written from."""
    return Sample(question=answer.question, answer=answer.answer, language=answer.language,
                  contexts=tuple(embedding_text(h.text, h.meta) for h in answer.sources))


def checks() -> Rewards:
    """The rewards a checker computes at inference, without a reference or an answerability label: the share of
    the answer's claims its cited sources support, and the length penalty (the default weights of a recipe's
    ``[rewards]``). On the handbook's held-out questions these picked better answers among 4 than a reward
    model trained on 261 pairs did (bench/results/train_rl_best_of.json)."""
    return Rewards.from_section(RewardsSection(refusal=0, correctness=0))


def best_of_n(kb: Any, question: str, scorer: Scorer, *, n: int = 4, temperature: float = 0.7,
              **options: Any) -> BestOf:
    """Ask ``kb`` (a :class:`~ragtune.kb.KnowledgeBase`) ``n`` times — greedily, then sampling at
    ``temperature`` — and keep the answer ``scorer`` rates highest (the earliest on a tie). ``options`` are
    :meth:`KnowledgeBase.ask`'s (history, mode, filter, k)."""
    if n < 1:
        raise ConfigError(f"best-of-n needs n >= 1, got {n}")
    if temperature <= 0 and n > 1:
        raise ConfigError(f"sampling {n} answers needs a temperature above 0, got {temperature}")
    started = time.perf_counter()
    answers = [kb.ask(question, temperature=0.0 if i == 0 else temperature, **options) for i in range(n)]
    timings = {"answers": elapsed_ms(started)}
    t = time.perf_counter()
    # Identical answers (a refusal by the retrieval gate comes back n times) are scored once.
    keys = [(a.answer, tuple(h.chunk_id for h in a.sources)) for a in answers]
    distinct = list(dict.fromkeys(keys))
    scored = scorer.score([sample_of(answers[keys.index(k)]) for k in distinct]) if len(distinct) > 1 else [0.0]
    by_key = dict(zip(distinct, scored, strict=True))
    scores = [by_key[k] for k in keys]
    timings["score"] = elapsed_ms(t)
    timings["total"] = elapsed_ms(started)
    best = max(range(n), key=lambda i: (scores[i], -i))
    return BestOf(answer=answers[best], candidates=list(zip(answers, scores, strict=True)), timings=timings)
