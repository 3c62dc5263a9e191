"""The local backend's repetition controls, on tensors: generated tokens only, never the prompt."""

from __future__ import annotations

import pytest
import torch

from ragtune.llm.local import _GeneratedRepetition

pytestmark = pytest.mark.unit


def test_repetition_processor_counts_generated_tokens_only() -> None:
    prompt = [7, 8, 9]
    ids = torch.tensor([prompt + [1, 2, 3, 1, 2]])
    scores = torch.full((1, 10), 2.0)
    out = _GeneratedRepetition(len(prompt), penalty=2.0, ngram=3)(ids, scores.clone())
    assert out[0, 3] == -float("inf")  # "1 2" was followed by 3 before: 3 would repeat that 3-gram
    assert out[0, 1] == out[0, 2] == 1.0  # generated tokens: positive logits divided by the penalty
    assert out[0, 7] == out[0, 8] == 2.0 and out[0, 0] == 2.0  # prompt-only and unseen tokens untouched


def test_negative_logits_of_generated_tokens_are_multiplied() -> None:
    ids = torch.tensor([[5, 1]])
    scores = torch.full((1, 4), -1.0)
    out = _GeneratedRepetition(1, penalty=1.5, ngram=0)(ids, scores.clone())
    assert out[0, 1] == -1.5 and out[0, 2] == -1.0
