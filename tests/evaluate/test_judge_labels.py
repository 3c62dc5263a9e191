"""The labelled judge set (tests/fixtures/judge_labels.jsonl): its make-up, and how well the default judge's
faithfulness separates supported answers from changed numbers, swapped names, added claims and inventions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ragtune.evaluate import evaluate_rag
from ragtune.evaluate.stats import roc_auc

pytestmark = pytest.mark.unit

LABELS = Path(__file__).resolve().parents[1] / "fixtures" / "judge_labels.jsonl"
ROWS = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
# Issue 15 asks for 0.90; the judge measures 0.905 (en 0.894, zh 0.933; bench/results/eval_rag_judge.json).
AUC_FLOOR = 0.90


def test_the_set_covers_both_languages_and_every_kind_of_error() -> None:
    assert len(ROWS) >= 60
    kinds = Counter(row["kind"] for row in ROWS)
    assert set(kinds) == {"supported", "changed_number", "swapped_name", "added_claim", "invented"}
    assert min(kinds.values()) >= 15
    assert {row["language"] for row in ROWS} == {"en", "zh"}
    assert all(row["label"] == (row["kind"] == "supported") for row in ROWS)
    assert len({row["id"] for row in ROWS}) == len(ROWS)


def test_faithfulness_separates_the_labels() -> None:
    result = evaluate_rag(ROWS, metrics=["faithfulness"])
    scores = [item["faithfulness"] for item in result["items"]]
    labels = [row["label"] for row in ROWS]
    assert roc_auc(scores, labels) >= AUC_FLOOR
    for language in ("en", "zh"):
        keep = [i for i, row in enumerate(ROWS) if row["language"] == language]
        assert roc_auc([scores[i] for i in keep], [labels[i] for i in keep]) >= 0.8, language
