"""Language-model metrics: perplexity, ROUGE-L, exact match and pairwise win rate with position swap."""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragtune.errors import ConfigError
from ragtune.text import WORD_OR_HAN_RE

Verdict = Literal["A", "B", "tie"]
Judge = Callable[[str, str, str, str | None], Verdict]
"""A judge sees (question, answer A, answer B, reference or None) and says which answer is better."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_IGNORE_INDEX = -100


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased word tokens; each CJK character is a token of its own, as in multilingual ROUGE."""
    return WORD_OR_HAN_RE.findall(unicodedata.normalize("NFKC", text).lower())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of tokens), as rouge-score computes it without stemming."""
    return rouge_l_f1(rouge_tokens(prediction), rouge_tokens(reference))


def rouge_l_f1(pred: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1 of two token sequences (0 when either is empty)."""
    if not pred or not ref:
        return 0.0
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation and unicodedata.category(ch)[0] != "P")
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def perplexity(model: Any, sequences: Sequence[tuple[Sequence[int], Sequence[int]]], *, batch_size: int = 4) -> float:
    """exp of the mean negative log-likelihood over the label tokens (labels of -100 are not scored).

    ``sequences`` are (input_ids, labels) pairs, as the training encoders make them, so the score
    covers exactly the tokens training learns (assistant replies for chat data).
    """
    import torch

    if not sequences:
        raise ConfigError("perplexity needs at least one sequence.")
    total_nll, total_tokens = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), _IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (seq, lab) in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(list(seq))
            labels[row, : len(lab)] = torch.tensor(list(lab))
            mask[row, : len(seq)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        shifted = labels[:, 1:].to(device)
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=_IGNORE_INDEX,
            reduction="sum",
        )
        total_nll += float(losses)
        total_tokens += int((shifted != _IGNORE_INDEX).sum())
    if total_tokens == 0:
        raise ConfigError("perplexity: no sequence has a scored (label) token.")
    return math.exp(total_nll / total_tokens)


def overlap_judge(question: str, answer_a: str, answer_b: str, reference: str | None) -> Verdict:
    """The answer with the higher ROUGE-L against the reference wins; equal scores tie. Needs a reference."""
    if reference is None:
        raise ConfigError("the overlap judge needs reference answers — use an LLM judge for data without them")
    a, b = rouge_l(answer_a, reference), rouge_l(answer_b, reference)
    if abs(a - b) < 1e-9:
        return "tie"
    return "A" if a > b else "B"


_JUDGE_PROMPT = (
    "Which answer to the question is better: more correct, more complete and better supported?\n\n"
    "Question: {question}\n{reference}\nAnswer A: {a}\n\nAnswer B: {b}\n\nReply with one letter: A or B."
)


def llm_judge(llm: Any) -> Judge:
    """A judge backed by any ragtune LLM (local, llamacpp, openai); replies other than A or B count as a tie."""

    def judge(question: str, answer_a: str, answer_b: str, reference: str | None) -> Verdict:
        ref = f"Reference answer: {reference}\n" if reference else ""
        prompt = _JUDGE_PROMPT.format(question=question, reference=ref, a=answer_a, b=answer_b)
        reply = llm.chat([{"role": "user", "content": prompt}], max_tokens=4).strip().upper()
        if reply.startswith("A"):
            return "A"
        if reply.startswith("B"):
            return "B"
        return "tie"

    return judge


@dataclass(frozen=True)
class WinRate:
    """Pairwise outcome of a candidate against a baseline; ``rate`` counts a tie as half a win."""

    wins: int
    losses: int
    ties: int

    @property
    def rate(self) -> float:
        total = self.wins + self.losses + self.ties
        return (self.wins + 0.5 * self.ties) / total if total else math.nan

    def to_dict(self) -> dict[str, float]:
        return {"wins": self.wins, "losses": self.losses, "ties": self.ties, "rate": self.rate}


def win_rate(
    judge: Judge,
    questions: Sequence[str],
    candidate: Sequence[str],
    baseline: Sequence[str],
    references: Sequence[str] | None = None,
) -> WinRate:
    """How often ``candidate`` beats ``baseline``, each pair judged twice with the answers' positions swapped.

    A win or loss counts only when both orders agree; a judge that flips with the order (position bias)
    gives a tie, so order bias cancels instead of inflating either side.
    """
    if not len(questions) == len(candidate) == len(baseline):
        raise ConfigError("win_rate: questions, candidate and baseline answers must have the same length.")
    if references is not None and len(references) != len(questions):
        raise ConfigError("win_rate: references must have one entry per question.")
    wins = losses = ties = 0
    for i, question in enumerate(questions):
        reference = references[i] if references is not None else None
        first = judge(question, candidate[i], baseline[i], reference)
        swapped = judge(question, baseline[i], candidate[i], reference)
        if first == "A" and swapped == "B":
            wins += 1
        elif first == "B" and swapped == "A":
            losses += 1
        else:
            ties += 1
    return WinRate(wins, losses, ties)
