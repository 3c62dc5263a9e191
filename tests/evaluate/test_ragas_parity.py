"""Parity with ragas's own non-LLM metrics on randomised inputs: ragtune's numbers must be RAGAS's numbers
(IDBasedContextRecall/Precision, NonLLMContextRecall, NonLLMContextPrecisionWithReference, ExactMatch,
RougeScore), wherever RAGAS gives a number at all (it gives NaN or fails on empty inputs; ragtune does not)."""

from __future__ import annotations

import os
import random
import warnings

import pytest

from ragtune.evaluate.rag import score_samples
from ragtune.evaluate.samples import load_samples
from ragtune.rag.claims import default_judge

pytestmark = [pytest.mark.unit, pytest.mark.slow]

_VOCABULARY = ("refund refunds refunded window windows enterprise customers customer invoice invoices days day "
               "approval approved approving director running runs ran cats cat quickly quick 45 14 10,000 EUR the "
               "a of is are within from by policy policies café naïve rotation rotated rotating keys key")
WORDS = _VOCABULARY.split(" ")


@pytest.fixture(scope="module")
def ragas():
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.dataset_schema import SingleTurnSample
        from ragas.metrics import (
            ExactMatch,
            IDBasedContextPrecision,
            IDBasedContextRecall,
            NonLLMContextPrecisionWithReference,
            NonLLMContextRecall,
            RougeScore,
        )

    class Ragas:
        sample = SingleTurnSample
        id_recall = IDBasedContextRecall()
        id_precision = IDBasedContextPrecision()
        string_recall = NonLLMContextRecall()
        string_precision = NonLLMContextPrecisionWithReference()
        exact = ExactMatch()
        rouge = RougeScore()

    return Ragas


def ours(rows: list[dict], metric: str) -> list[float]:
    scores, _ = score_samples(load_samples(rows), [metric], judge=default_judge())
    return [s[metric].value for s in scores]


def sentence(rng: random.Random, low: int = 1, high: int = 12) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))
    return text.capitalize() + rng.choice([".", "!", "", "?", "; ok."])


def test_id_based_context_recall_and_precision(ragas) -> None:
    rng = random.Random(11)
    rows, expected_recall, expected_precision = [], [], []
    pool: list[object] = [*range(8), *"abcdef", "3"]
    for _ in range(300):
        retrieved = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
        reference = [rng.choice(pool) for _ in range(rng.randint(1, 5))]
        rows.append({"user_input": "q", "retrieved_context_ids": retrieved, "reference_context_ids": reference})
        sample = ragas.sample(retrieved_context_ids=retrieved, reference_context_ids=reference)
        expected_recall.append(ragas.id_recall.single_turn_score(sample))
        expected_precision.append(ragas.id_precision.single_turn_score(sample))
    assert ours(rows, "context_recall") == pytest.approx(expected_recall, abs=1e-12)
    assert ours(rows, "context_precision") == pytest.approx(expected_precision, abs=1e-12)
    assert len(set(expected_recall)) > 5  # the inputs cover the range, not one value


def test_string_based_context_recall_and_precision(ragas) -> None:
    rng = random.Random(12)
    rows, expected_recall, expected_precision = [], [], []
    for _ in range(150):
        reference = [sentence(rng, 3, 10) for _ in range(rng.randint(1, 3))]
        retrieved = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.5:  # a near copy of a reference context, so matches happen
                base = list(rng.choice(reference))
                for _ in range(rng.randint(0, len(base) // 2)):
                    base[rng.randrange(len(base))] = rng.choice("abcdefgh ")
                retrieved.append("".join(base))
            else:
                retrieved.append(sentence(rng, 3, 10))
        rows.append({"user_input": "q", "retrieved_contexts": retrieved, "reference_contexts": reference})
        sample = ragas.sample(retrieved_contexts=retrieved, reference_contexts=reference)
        expected_recall.append(ragas.string_recall.single_turn_score(sample))
        expected_precision.append(ragas.string_precision.single_turn_score(sample))
    assert ours(rows, "context_recall") == pytest.approx(expected_recall, abs=1e-12)
    # RAGAS divides by (relevant + 1e-10), so its average precision is off by that much.
    assert ours(rows, "context_precision") == pytest.approx(expected_precision, abs=1e-8)
    assert 0 < sum(expected_recall) < len(expected_recall)


def test_exact_match(ragas) -> None:
    rng = random.Random(13)
    rows, expected = [], []
    for _ in range(200):
        reference = sentence(rng, 1, 4)
        response = rng.choice([reference, reference.lower(), reference + " ", sentence(rng, 1, 4)])
        rows.append({"user_input": "q", "response": response, "reference": reference})
        expected.append(ragas.exact.single_turn_score(ragas.sample(response=response, reference=reference)))
    assert ours(rows, "exact_match") == expected
    assert 0 < sum(expected) < len(expected)


def test_rouge_score(ragas) -> None:
    rng = random.Random(14)
    rows, expected = [], []
    for _ in range(300):
        reference = " ".join(sentence(rng) for _ in range(rng.randint(1, 3)))
        response = rng.choice([" ".join(sentence(rng) for _ in range(rng.randint(1, 3))), reference.upper(), "",
                               reference.replace("s ", " ")])
        rows.append({"user_input": "q", "response": response, "reference": reference})
        expected.append(ragas.rouge.single_turn_score(ragas.sample(response=response, reference=reference)))
    assert ours(rows, "rouge_score") == pytest.approx(expected, abs=1e-12)
    assert len(set(expected)) > 50
