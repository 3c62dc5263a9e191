"""Rewards for answers to knowledge-base questions: small functions ragtune can check itself, combined by weight.

Each reward scores one answer (a :class:`Sample`: the question, its numbered sources, the answer and what
is known about the question) and returns None where it has nothing to say, so a weighted sum only counts
the rewards that apply — the convention TRL's GRPO trainer follows too (None becomes NaN and is skipped).

==============  ==========  ================================================================================
reward          range       meaning
==============  ==========  ================================================================================
citation        0 … 1       share of the answer's claims the sources support, each credited in full when it
                            cites a supporting source and ``uncited_credit`` when it cites none; None for a
                            refusal (nothing is claimed)
refusal         -1 or +1    +1 when the answer refuses exactly when the question is marked unanswerable;
                            None when that is unknown
correctness     0 … 1       containment of the reference answer: the share of its content terms the answer
                            contains, 0 when the answer lacks one of its numbers; None without a reference or
                            for an unanswerable question (the refusal reward judges those)
length          -1 … 0      penalty for the words (or Chinese characters) beyond ``length_limit``
reward_model    any         the score of a reward model trained with ``ragtune train reward``
==============  ==========  ================================================================================

With the default weights a correct cited answer earns 3, a wrong but cited one 1, a needless refusal -1; on
an unanswerable question a refusal earns 1, a supported but irrelevant copy of a source 0, an invented
answer -1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ragtune.rag.citations import CITATION_RE, CitedSentence, parse_numbers, split_cited_sentences
from ragtune.rag.claims import ClaimJudge, default_judge, split_claims, strip_markers
from ragtune.rag.prompts import is_model_refusal
from ragtune.rag.quantities import quantities
from ragtune.store.text import tokenize
from ragtune.text import WORD_OR_HAN_RE, detect_language
from ragtune.train.recipe import RewardsSection


@dataclass(frozen=True)
class Sample:
    """One answer to judge, with what is known about its question.

    ``contexts`` are the numbered sources the answer was written from (``[1]`` is ``contexts[0]``);
    ``answerable`` says whether they hold the answer (None: unknown); ``reference`` is a correct answer;
    ``source`` the number of the source that holds it, when known.
    """

    question: str
    answer: str
    contexts: tuple[str, ...] = ()
    reference: str | None = None
    answerable: bool | None = None
    source: int | None = None
    language: str | None = None

    @property
    def lang(self) -> str:
        return self.language or detect_language(self.question) or "en"


# ---------------------------------------------------------------------------------------------- text facts


def is_refusal(answer: str) -> bool:
    """An empty answer or one that says the sources hold no answer (the pipeline refuses both)."""
    return not answer.strip() or is_model_refusal(answer)


def cited_sources(text: str) -> list[int]:
    """Source numbers the text cites, in order of first mention."""
    numbers = [n for m in CITATION_RE.finditer(text) for n in parse_numbers(m.group(1))]
    return list(dict.fromkeys(numbers))


def stated_numbers(text: str) -> set[str]:
    """Values of the numbers a text states, citation markers excepted (the claim judge's reading: '10,000' and
    '10000' agree, so do '15 天' and 十五天)."""
    return {q.value for q in quantities(strip_markers(text))}


def _without_numbers(text: str) -> str:
    for quantity in sorted(quantities(text), key=lambda q: q.start, reverse=True):
        text = f"{text[: quantity.start]} {text[quantity.end:]}"
    return text


def _key(text: str) -> str:
    return re.sub(r"\W+", "", text.lower())


def _cited_clauses(answer: str) -> list[CitedSentence]:
    """The answer's sentences and ';'-clauses with the sources each cites; a marker at the end of a sentence
    cites its earlier clauses too ("A; B [2]." cites [2] for A and B)."""
    pieces = split_cited_sentences(answer)
    for i in range(len(pieces) - 2, -1, -1):
        if not pieces[i].numbers and pieces[i].text.rstrip().endswith((";", "；")):
            pieces[i].numbers = list(pieces[i + 1].numbers)
    return pieces


# ---------------------------------------------------------------------------------------------- rewards


def refusal_reward(sample: Sample) -> float | None:
    """+1 when the answer refuses exactly when the question is unanswerable, -1 otherwise; None when unknown."""
    if sample.answerable is None:
        return None
    return 1.0 if is_refusal(sample.answer) != sample.answerable else -1.0


def citation_reward(sample: Sample, judge: ClaimJudge | None = None, *, uncited_credit: float = 0.5
                    ) -> float | None:
    """The share of the answer's claims that the sources support, by the project's claim judge (the one that
    verifies answers for users): a supported claim earns 1 when it cites a source that supports it,
    ``uncited_credit`` when it cites none, and 0 when its citations name only sources that do not support it.
    An answer without claims earns 0; a refusal claims nothing and gets None."""
    if is_refusal(sample.answer):
        return None
    claims = split_claims(sample.answer, sample.language)
    if not claims:
        return 0.0
    judge = judge or default_judge()
    contexts = list(sample.contexts)
    checks = judge.check(claims, contexts, question=sample.question, language=sample.lang)
    # split_claims drops the markers: find each claim's sentence to know what it cites.
    sentences = [(_key(s.plain), s.numbers) for s in _cited_clauses(sample.answer)]
    credit = 0.0
    for claim, check in zip(claims, checks, strict=True):
        if not check.supported:
            continue
        key = _key(claim)
        cited = next((numbers for text, numbers in sentences if key and key in text), [])
        cited = [n for n in cited if 1 <= n <= len(contexts)]
        if not cited:
            credit += uncited_credit
        elif check.source is not None and check.source + 1 in cited:
            credit += 1.0
        elif judge.check([claim], [contexts[n - 1] for n in cited], question=sample.question,
                         language=sample.lang)[0].supported:
            credit += 1.0  # the cited source supports it too, though another one does better
    return credit / len(claims)


def correctness_reward(sample: Sample) -> float | None:
    """Containment of the reference: the share of its content terms (the BM25 analyzer's: stemmed, jieba for
    Chinese) in the answer, and 0 when the answer lacks a number the reference states. None when there is no
    reference to compare with, or the question is unanswerable (refusing is judged by the refusal reward)."""
    if sample.answerable is False or not sample.reference or is_refusal(sample.reference):
        return None
    if is_refusal(sample.answer):
        return 0.0
    reference, answer = strip_markers(sample.reference), strip_markers(sample.answer)
    if not stated_numbers(reference) <= stated_numbers(answer):
        return 0.0
    # Numbers are compared by value above; as terms, '15' and 十五 would differ.
    wanted = set(tokenize(_without_numbers(reference)))
    if not wanted:
        return 1.0
    return len(wanted & set(tokenize(_without_numbers(answer)))) / len(wanted)


def length_penalty(sample: Sample, limit: int = 60) -> float:
    """0 up to ``limit`` words (a Chinese character counts as a word), then falling linearly to -1 at twice it."""
    if limit <= 0:
        raise ValueError(f"limit must be greater than 0, got {limit}")
    units = len(WORD_OR_HAN_RE.findall(strip_markers(sample.answer)))
    return -min(1.0, max(0, units - limit) / limit)


# ---------------------------------------------------------------------------------------------- grading


@dataclass(frozen=True)
class Grade:
    """What an evaluation table counts of one answer."""

    refused: bool
    right: bool
    cited: bool
    answerable: bool | None

    @property
    def right_and_cited(self) -> bool:
        return self.right and self.cited

    @property
    def false_refusal(self) -> bool:
        return self.refused and self.answerable is True

    @property
    def correct_refusal(self) -> bool:
        return self.refused and self.answerable is False


#: Containment at or above which an answer counts as right (every number of the reference must be there).
RIGHT_AT = 0.5


def grade(sample: Sample) -> Grade:
    """Refused, right (containment of the reference at least ``RIGHT_AT``) and cited (it cites the source that
    holds the answer, ``sample.source``)."""
    refused = is_refusal(sample.answer)
    correctness = correctness_reward(sample)
    right = not refused and correctness is not None and correctness >= RIGHT_AT
    cited = not refused and sample.source is not None and sample.source in cited_sources(sample.answer)
    return Grade(refused=refused, right=right, cited=cited, answerable=sample.answerable)


def grade_table(samples: Sequence[Sample]) -> dict[str, Any]:
    """Rates over answerable and unanswerable questions: right+cited, right, cited, false and correct refusals."""
    grades = [grade(s) for s in samples]
    answerable = [g for g in grades if g.answerable is True]
    unanswerable = [g for g in grades if g.answerable is False]

    def rate(values: list[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "questions": len(grades),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "right_and_cited": rate([g.right_and_cited for g in answerable]),
        "right": rate([g.right for g in answerable]),
        "cited": rate([g.cited for g in answerable]),
        "false_refusals": rate([g.false_refusal for g in answerable]),
        "correct_refusals": rate([g.correct_refusal for g in unanswerable]),
    }


# ---------------------------------------------------------------------------------------------- combining


BatchReward = Callable[[Sequence[Sample]], list[float | None]]


class Scorer(Protocol):
    """A model that scores answers in batches (a reward model from ``ragtune train reward``)."""

    def score(self, samples: Sequence[Sample]) -> list[float]: ...


def per_sample(function: Callable[[Sample], float | None]) -> BatchReward:
    """A batch reward from a reward of one sample."""
    return lambda samples: [function(s) for s in samples]


class Rewards:
    """Named reward functions with weights; the total of an answer is the weighted sum of the rewards that apply.

    Each function takes a batch of samples and returns one reward (or None) per sample.
    """

    def __init__(self, functions: dict[str, tuple[float, BatchReward]]) -> None:
        used = {name: (weight, fn) for name, (weight, fn) in functions.items() if weight}
        if not used:
            raise ValueError("every reward weight is 0 — give at least one reward a weight (rewards.citation = 1.0)")
        for name, (weight, _) in used.items():
            if not math.isfinite(weight):
                raise ValueError(f"rewards.{name}: the weight must be a finite number, got {weight}")
        self.functions = used

    @classmethod
    def from_section(
        cls, section: RewardsSection, *, judge: ClaimJudge | None = None, reward_model: Scorer | None = None
    ) -> Rewards:
        """The rewards a recipe's [rewards] section weights. ``judge`` checks claims for the citation reward
        (default: the project's judge); ``reward_model`` is the loaded rewards.model, needed when it is
        weighted."""
        functions: dict[str, tuple[float, BatchReward]] = {
            "citation": (section.citation, per_sample(
                lambda s: citation_reward(s, judge, uncited_credit=section.uncited_credit))),
            "refusal": (section.refusal, per_sample(refusal_reward)),
            "correctness": (section.correctness, per_sample(correctness_reward)),
            "length": (section.length, per_sample(lambda s: length_penalty(s, section.length_limit))),
        }
        if section.reward_model:
            if reward_model is None:
                raise ValueError("rewards.reward_model is weighted but no reward model was loaded (rewards.model)")
            scorer = reward_model
            functions["reward_model"] = (section.reward_model, lambda samples: list(scorer.score(samples)))
        return cls(functions)

    @property
    def weights(self) -> dict[str, float]:
        return {name: weight for name, (weight, _) in self.functions.items()}

    def breakdown(self, samples: Sequence[Sample]) -> dict[str, list[float | None]]:
        """Each reward of each sample (None where it does not apply)."""
        results = {}
        for name, (_, function) in self.functions.items():
            values = function(samples)
            if len(values) != len(samples):
                raise ValueError(f"reward {name} gave {len(values)} values for {len(samples)} answers")
            results[name] = values
        return results

    def total(self, samples: Sequence[Sample]) -> list[float]:
        """The weighted sum per sample, over the rewards that apply to it."""
        totals = [0.0] * len(samples)
        for name, values in self.breakdown(samples).items():
            weight = self.functions[name][0]
            for i, value in enumerate(values):
                if value is not None:
                    totals[i] += weight * value
        return totals

    def score(self, samples: Sequence[Sample]) -> list[float]:
        """:meth:`total`, so weighted rewards choose among best-of-n answers like a reward model does."""
        return self.total(samples)

    def trl_functions(self) -> tuple[list[Callable[..., list[float | None]]], list[float]]:
        """The rewards as TRL reward functions (one per reward, named for its log lines) and their weights.

        The training rows carry ``question``, ``contexts`` and optionally ``reference``, ``answerable``,
        ``source`` and ``language`` columns; TRL passes them as keyword lists beside the completions.
        """
        functions = []
        for name, (_, function) in self.functions.items():
            functions.append(_trl_reward(name, function))
        return functions, list(self.weights.values())


def _trl_reward(name: str, function: BatchReward) -> Callable[..., list[float | None]]:
    def reward(completions: list[Any], question: list[str], contexts: list[list[str]], **columns: Any
               ) -> list[float | None]:
        samples = [
            Sample(
                question=question[i], answer=completion_text(completions[i]), contexts=tuple(contexts[i] or ()),
                reference=_column(columns, "reference", i), answerable=_column(columns, "answerable", i),
                source=_column(columns, "source", i), language=_column(columns, "language", i),
            )
            for i in range(len(completions))
        ]
        return function(samples)

    reward.__name__ = name
    return reward


def _column(columns: dict[str, Any], key: str, index: int) -> Any:
    values = columns.get(key)
    return values[index] if values is not None else None


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversation whose last message is the answer."""
    if isinstance(completion, str):
        return completion
    return str(completion[-1]["content"]) if completion else ""
