"""Best-of-n: the greedy answer first, sampled ones after, the best-scored kept (the greedy one on a tie),
identical answers scored once. The real pipeline with a trained reward model runs in test_rl_cli.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ragtune.errors import ConfigError
from ragtune.train.best_of import best_of_n, checks, sample_of
from ragtune.train.rewards import Sample
from ragtune.types import Answer, ChunkMeta, Hit

SOURCE = Hit(chunk_id="c1", document_id="d1", source="refunds.md", text="Refunds within 14 days.", score=1.0,
             meta=ChunkMeta())


class ScriptedKB:
    """Answers with canned texts in order and records the temperature of each call."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.temperatures: list[float] = []

    def ask(self, question: str, *, temperature: float = 0.0, **options: Any) -> Answer:
        self.temperatures.append(temperature)
        text = self.texts[len(self.temperatures) - 1]
        return Answer(id=str(len(self.temperatures)), question=question, answer=text, grounded=True,
                      sources=[SOURCE])


class LengthScorer:
    """Scores an answer by its length and counts what it was asked to score."""

    def __init__(self) -> None:
        self.scored: list[Sample] = []

    def score(self, samples: Sequence[Sample]) -> list[float]:
        self.scored.extend(samples)
        return [float(len(s.answer)) for s in samples]


@pytest.mark.unit
def test_the_best_scored_answer_is_kept() -> None:
    kb = ScriptedKB("Short [1].", "A much longer answer [1].", "Mid answer [1].")
    scorer = LengthScorer()
    outcome = best_of_n(kb, "Refund window?", scorer, n=3, temperature=0.9)
    assert kb.temperatures == [0.0, 0.9, 0.9]  # greedy first, then sampled
    assert outcome.answer.answer == "A much longer answer [1]." and outcome.chosen == 1
    assert [s for _, s in outcome.candidates] == [10.0, 25.0, 15.0]
    assert scorer.scored[0].contexts == ("Refunds within 14 days.",) and scorer.scored[0].question == "Refund window?"
    assert {"answers", "score", "total"} <= set(outcome.timings)


@pytest.mark.unit
def test_ties_keep_the_greedy_answer_and_repeats_are_scored_once() -> None:
    scorer = LengthScorer()
    outcome = best_of_n(ScriptedKB("Same [1].", "Same [1].", "Size [1]."), "q", scorer, n=3)
    assert outcome.chosen == 0 and len(scorer.scored) == 2
    refusals = LengthScorer()
    outcome = best_of_n(ScriptedKB(*["I don't know."] * 4), "q", refusals, n=4)
    assert outcome.chosen == 0 and refusals.scored == []  # one distinct answer: nothing to choose


@pytest.mark.unit
def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="n >= 1"):
        best_of_n(ScriptedKB(), "q", LengthScorer(), n=0)
    with pytest.raises(ConfigError, match="temperature above 0"):
        best_of_n(ScriptedKB(), "q", LengthScorer(), n=2, temperature=0.0)


@pytest.mark.unit
def test_sample_of_an_answer() -> None:
    answer = Answer(id="1", question="q", answer="a [1].", grounded=True, language="zh", sources=[SOURCE])
    assert sample_of(answer) == Sample(question="q", answer="a [1].", contexts=("Refunds within 14 days.",),
                                       language="zh")


@pytest.mark.unit
def test_the_checks_keep_the_answer_its_source_supports() -> None:
    # The real claim judge: a number the source does not state loses to the cited, supported one, whatever the order.
    kb = ScriptedKB("Refunds within 30 days [1].", "Refunds within 14 days [1].",
                    "Refunds within 30 days [1].")
    outcome = best_of_n(kb, "How long do I have to ask for a refund?", checks(), n=3)
    assert outcome.chosen == 1 and outcome.answer.answer == "Refunds within 14 days [1]."
    supported, wrong = outcome.candidates[1][1], outcome.candidates[0][1]
    assert supported == pytest.approx(1.0) and wrong < supported
