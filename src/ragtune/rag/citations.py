"""Citation parsing and verification: every [n] must name a provided source that supports its sentence."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragtune.store.text import tokenize
from ragtune.text import CJK_WIDE_RE, split_sentences
from ragtune.types import Citation, Hit, RemovedCitation

# [1]  [1, 3]  [1-3]  [^2]  【1】  ［1］  [Source 2]  [来源 1]
CITATION_RE = re.compile(
    r"[\[【［]\^?\s*(?:(?:source|src|来源|资料)\s*)?(\d+(?:\s*(?:[-–,，、]|and|&)\s*\d+)*)\s*[\]】］]", re.IGNORECASE
)
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


@dataclass
class VerifiedAnswer:
    """The answer with only verified citations, the citations themselves, and what was removed."""

    text: str
    citations: list[Citation]
    removed: list[RemovedCitation]


def verify_citations(
    answer: str, sources: Sequence[Hit], *, min_support: float = 0.5, attribute_uncited: bool = True,
    min_attribution: float = 0.6, min_terms: int = 3,
) -> VerifiedAnswer:
    """Keep citations that name a provided source whose text supports the sentence; drop and report the rest.

    With ``attribute_uncited``, a sentence that cites nothing but is strongly supported by one source gets
    that source's number added (marked ``added``): small models often forget to cite what they copied.
    """
    sentences = split_cited_sentences(answer)
    removed: list[RemovedCitation] = []
    used: dict[int, list[float]] = {}
    added: set[int] = set()
    out: list[str] = []
    seen: set[str] = set()
    for sentence in sentences:
        if sentence.plain in seen:  # small models loop; a repeated sentence adds nothing
            continue
        seen.add(sentence.plain)
        kept: list[int] = []
        for n in sentence.numbers:
            if not 1 <= n <= len(sources):
                removed.append(RemovedCitation(number=n, sentence=sentence.plain,
                                               reason=f"there is no source [{n}] (sources are 1–{len(sources)})"))
                continue
            score = support(sentence.plain, sources[n - 1].text)
            if score < min_support:
                removed.append(RemovedCitation(number=n, sentence=sentence.plain,
                                               reason=f"source [{n}] does not support this sentence "
                                                      f"(support {score:.2f} < {min_support})"))
                continue
            kept.append(n)
            used.setdefault(n, []).append(score)
        if not kept and attribute_uncited and not sentence.numbers and len(terms(sentence.plain)) >= min_terms:
            scores = [support(sentence.plain, s.text) for s in sources]
            if scores and max(scores) >= min_attribution:
                best = scores.index(max(scores)) + 1
                kept.append(best)
                used.setdefault(best, []).append(max(scores))
                added.add(best)
        markers = "".join(f"[{n}]" for n in kept)
        out.append(_with_markers(sentence.plain, markers))
    citations = [
        Citation(
            number=n, chunk_id=sources[n - 1].chunk_id, document_id=sources[n - 1].document_id,
            source=sources[n - 1].source, page_number=sources[n - 1].meta.page_number,
            section_title=sources[n - 1].meta.section_title, snippet=_snippet(sources[n - 1].text),
            support=round(max(scores), 3), added=n in added and n not in _explicit(sentences, used),
        )
        for n, scores in sorted(used.items())
    ]
    return VerifiedAnswer(_join(out), citations, removed)


def _explicit(sentences: list[CitedSentence], used: dict[int, list[float]]) -> set[int]:
    return {n for s in sentences for n in s.numbers if n in used}


def _with_markers(sentence: str, markers: str) -> str:
    if not markers:
        return sentence
    # Put markers before the closing punctuation, where readers expect them: "fact [1]."
    match = re.search(r"[.!?。！？;；]+$", sentence)
    if match:
        return f"{sentence[: match.start()].rstrip()} {markers}{match.group(0)}"
    return f"{sentence} {markers}"


def _join(sentences: list[str]) -> str:
    text = ""
    for s in sentences:
        if text and not CJK_WIDE_RE.match(text[-1]):
            text += " "
        text += s
    return text.strip()


def _snippet(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
