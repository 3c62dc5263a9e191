"""Citation markers: parsing [n] in every common form, the sentences that carry them, and lexical support."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragtune.rag.claims import CITATION_RE
from ragtune.store.text import tokenize
from ragtune.text import CJK_WIDE_RE, split_sentences

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.!?,;:。！？，；：])")
_RANGE_RE = re.compile(r"(\d+)\s*[-–]\s*(\d+)")
_MAX_RANGE = 20


def parse_numbers(marker_body: str) -> list[int]:
    """Numbers inside one marker: '1, 3' → [1, 3]; '2-4' → [2, 3, 4] (short ranges only)."""
    numbers: list[int] = []
    for part in re.split(r"\s*(?:[,，、]|and|&)\s*", marker_body):
        ranged = _RANGE_RE.fullmatch(part.strip())
        if ranged:
            lo, hi = int(ranged.group(1)), int(ranged.group(2))
            numbers.extend(range(lo, hi + 1) if 0 <= hi - lo <= _MAX_RANGE else [lo, hi])
        elif part.strip().isdigit():
            numbers.append(int(part))
    return list(dict.fromkeys(numbers))


@dataclass
class CitedSentence:
    """A sentence of the answer, its text without markers, and the source numbers it cites."""

    text: str
    plain: str
    numbers: list[int] = field(default_factory=list)


def split_cited_sentences(answer: str) -> list[CitedSentence]:
    """Split an answer into sentences; markers right after a sentence end belong to that sentence."""
    # An answer's lines are statements of their own, and claims joined by ';' are checked one by one.
    pieces = [answer[s:e] for s, e in split_sentences(answer, semicolons=True, line_breaks=True)]
    sentences: list[CitedSentence] = []
    for piece in pieces:
        leading = re.match(rf"^\s*((?:{CITATION_RE.pattern}\s*)+)", piece, re.IGNORECASE)
        if leading and sentences:
            # "Fact. [1] Next fact." splits as "Fact." + "[1] Next fact.": give [1] back to "Fact.".
            prev = sentences[-1]
            prev.text = f"{prev.text} {leading.group(1).strip()}"
            prev.numbers.extend(n for m in CITATION_RE.finditer(leading.group(1)) for n in parse_numbers(m.group(1)))
            piece = piece[leading.end():]
            if not piece.strip():
                continue
        numbers = [n for m in CITATION_RE.finditer(piece) for n in parse_numbers(m.group(1))]
        plain = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(CITATION_RE.sub("", piece).split()))
        sentences.append(CitedSentence(piece.strip(), plain, numbers))
    for s in sentences:
        s.numbers = list(dict.fromkeys(s.numbers))
    return sentences


_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")


def numbers_in(text: str) -> set[str]:
    """Numbers written in a text, with thousands separators dropped ('10,000' → '10000')."""
    return {n.replace(",", "") for n in _NUMBER_RE.findall(text)}


@functools.lru_cache(maxsize=1024)
def terms(text: str) -> frozenset[str]:
    """Content terms of a text (the BM25 analyzer's), cached: one answer checks the same sources many times."""
    return frozenset(tokenize(text))


def support(sentence: str, source: str) -> float:
    """Share of the sentence's content terms (stemmed, stopwords dropped, jieba for Chinese) found in the source;
    0 when the sentence states a number the source does not contain (the commonest invented detail)."""
    wanted = terms(sentence)
    if not wanted or not numbers_in(sentence) <= numbers_in(source):
        return 0.0
    return len(wanted & terms(source)) / len(wanted)


def with_markers(sentence: str, markers: str) -> str:
    """``sentence`` with citation markers before its closing punctuation, where readers expect them: "fact [1]."."""
    if not markers:
        return sentence
    match = re.search(r"[.!?。！？;；]+$", sentence)
    if match:
        return f"{sentence[: match.start()].rstrip()} {markers}{match.group(0)}"
    return f"{sentence} {markers}"


def join_sentences(sentences: Sequence[str]) -> str:
    """Sentences joined as prose: a space between them, none after Chinese punctuation."""
    text = ""
    for s in sentences:
        if text and not CJK_WIDE_RE.match(text[-1]):
            text += " "
        text += s
    return text.strip()
