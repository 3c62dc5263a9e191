"""Data hygiene before the loop writes a row: eval questions kept out (leakage), repeats dropped, personal data
redacted (guard/pii.py, the one redaction module), each step counted for the run's record."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

from ragtune.guard.pii import PiiMatch, redact

_TRAILING = re.compile(r"[\s?？.。!！,，;；:：]+$")


def normalise_question(text: str) -> str:
    """A question as the leakage and repeat checks compare it: NFKC, case-folded, whitespace collapsed, without
    trailing punctuation ('What is X?' and 'what is x' are one question; so are full- and half-width forms)."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return _TRAILING.sub("", text)


def question_hash(text: str) -> str:
    """The SHA-256 (first 16 hex digits) of the normalised question."""
    return hashlib.sha256(normalise_question(text).encode()).hexdigest()[:16]


class LeakageGuard:
    """Says whether a training question is an eval question: the same normalised hash, or a near duplicate
    (edit-distance similarity of the normalised texts at or above ``threshold``)."""

    def __init__(self, eval_questions: Iterable[str], threshold: float = 0.9) -> None:
        self.threshold = threshold
        self._normalised = sorted({normalise_question(q) for q in eval_questions if q.strip()})
        self._hashes = {hashlib.sha256(q.encode()).hexdigest()[:16] for q in self._normalised}

    def __len__(self) -> int:
        return len(self._normalised)

    def check(self, question: str) -> str | None:
        """'exact', 'near' or None (not an eval question)."""
        norm = normalise_question(question)
        if hashlib.sha256(norm.encode()).hexdigest()[:16] in self._hashes:
            return "exact"
        if self._normalised and process.extractOne(norm, self._normalised, scorer=fuzz.ratio,
                                                   score_cutoff=self.threshold * 100) is not None:
            return "near"
        return None


@dataclass
class HygieneReport:
    """What hygiene did to one dataset: rows in and out, and why rows went or changed."""

    rows_in: int = 0
    rows_out: int = 0
    leaked_exact: int = 0
    leaked_near: int = 0
    duplicates: int = 0
    pii_rows: int = 0
    pii: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: HygieneReport) -> None:
        for name in ("rows_in", "rows_out", "leaked_exact", "leaked_near", "duplicates", "pii_rows"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, count in other.pii.items():
            self.pii[kind] = self.pii.get(kind, 0) + count


class Redactor:
    """Redacts every string of a row with guard/pii.py, counting what it replaced by kind."""

    def __init__(self, kinds: Sequence[str] | None = None) -> None:
        self.kinds = list(kinds) if kinds else None
        self.counts: Counter[str] = Counter()

    def _mask(self, match: PiiMatch) -> str:
        self.counts[match.kind] += 1
        return f"[{match.kind.upper()}]"

    def value(self, value: Any) -> Any:
        """``value`` with personal data replaced in every string it holds (dict keys are field names, kept)."""
        if isinstance(value, str):
            return redact(value, self.kinds, mask=self._mask)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        return value


def clean_rows(
    rows: Sequence[dict[str, Any]], *, question: Callable[[dict[str, Any]], str],
    key: Callable[[dict[str, Any]], str], guard: LeakageGuard | None, redact_pii: bool = True,
    kinds: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], HygieneReport]:
    """The rows fit to train on, in order, and the report. Personal data is redacted first (the eval set is
    redacted alike, so the same question still matches); then a row whose ``question`` is an eval question is
    dropped; then a row whose ``key`` (e.g. question and target, one per line; each line normalised like a
    question) repeats an earlier one."""
    report = HygieneReport(rows_in=len(rows))
    counts: Counter[str] = Counter()
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        redactor = Redactor(kinds)  # one per row: only what is kept is counted
        if redact_pii:
            row = redactor.value(row)
        verdict = guard.check(question(row)) if guard is not None else None
        if verdict == "exact":
            report.leaked_exact += 1
            continue
        if verdict == "near":
            report.leaked_near += 1
            continue
        identity = "\n".join(normalise_question(part) for part in key(row).split("\n"))
        if identity in seen:
            report.duplicates += 1
            continue
        seen.add(identity)
        kept.append(row)
        counts.update(redactor.counts)
        report.pii_rows += bool(redactor.counts)
    report.rows_out = len(kept)
    report.pii = dict(sorted(counts.items()))
    return kept, report
