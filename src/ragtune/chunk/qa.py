"""Question-and-answer chunking: each question with its answer is one chunk, titled by the question."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ragtune.chunk.base import spans_to_chunks, trim_span
from ragtune.chunk.recursive import RecursiveChunker
from ragtune.parse.blocks import collapse_whitespace
from ragtune.tokens import TokenCounter, TokenIndex
from ragtune.types import BlockType, Chunk, Document

# FAQ text marks questions and answers at the start of a line: "Q:", "Question 3:", "问：", "**Q:**", "- A:",
# "## 问题：" ... (ASCII or full-width colon). The markup around the marker is optional.
_LEAD = r"^[ \t]*(?:#{1,6}[ \t]*|[-*+>][ \t]*|\d+[.)、][ \t]*)?(?:\*\*|__)?[ \t]*"
_TAIL = r"[ \t]*\d*[ \t]*(?:\*\*|__)?[ \t]*[:：][ \t]*(?:\*\*|__)?"
_QUESTION_LINE = re.compile(_LEAD + r"(?:Q|Question|问题|问|提问)" + _TAIL, re.IGNORECASE | re.MULTILINE)
_ANSWER_LINE = re.compile(_LEAD + r"(?:A|Answer|答案|答|回答)" + _TAIL, re.IGNORECASE | re.MULTILINE)
# A Markdown heading that is not a question ends the pair before it: it starts another part of the document.
_HEADING_LINE = re.compile(r"^#{1,6}[ \t]", re.MULTILINE)


@dataclass(frozen=True)
class QAPair:
    """A question and its answer: the span ``[start, end)`` of the document text holding both."""

    question: str
    start: int
    end: int


class QAChunker:
    """One chunk per question-and-answer pair, with ``section_title`` = the question.

    Pairs come from the blocks of a Q&A file (``source_type == "qa"``, see ``ragtune.parse.qa``) or, for any
    other document, from FAQ markers in its text ("Q:"/"A:", "问："/"答："). A pair longer than ``chunk_size``
    tokens is split recursively, every piece keeping the question as its title; text outside pairs is chunked
    recursively.
    """

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.counter = self._recursive.counter

    def split(self, document: Document) -> list[Chunk]:
        text = document.text
        index = TokenIndex(text, self.counter)
        # (start, end, question or None for text outside pairs), tiling the whole text.
        regions: list[tuple[int, int, str | None]] = []
        pos = 0
        for pair in qa_pairs(document):
            regions += [(pos, pair.start, None), (pair.start, pair.end, pair.question)]
            pos = pair.end
        regions.append((pos, len(text), None))

        kept: list[tuple[int, int, str | None]] = []
        for region_start, region_end, question in regions:
            for s, e in self._recursive.split_spans(text, region_start, region_end, index):
                start, end = trim_span(text, s, e)
                if start < end:
                    kept.append((start, end, question))
        chunks = spans_to_chunks(document, [(s, e) for s, e, _ in kept])
        for chunk, (_, _, question) in zip(chunks, kept, strict=True):
            if question is not None:
                chunk.meta.section_title = question
                if chunk.meta.heading_path[-1:] != [question]:
                    chunk.meta.heading_path.append(question)
        return chunks


def qa_pairs(document: Document) -> list[QAPair]:
    """The question-and-answer pairs of a document, in order: from its blocks for a Q&A file, else its text."""
    if document.source_type == "qa":
        return _block_pairs(document)
    # Headings the parser recognised (their '#' markup is gone from the text) end a pair like '#' lines do.
    return faq_pairs(document.text, [b.start for b in document.blocks if b.type is BlockType.HEADING])


def _block_pairs(document: Document) -> list[QAPair]:
    # ragtune.parse.qa writes each pair as a HEADING (the question) followed by its answer blocks, all sharing
    # the heading path [question].
    pairs: list[QAPair] = []
    blocks = document.blocks
    i = 0
    while i < len(blocks):
        heading = blocks[i]
        j = i + 1
        if heading.type is BlockType.HEADING:
            while (
                j < len(blocks)
                and blocks[j].type is not BlockType.HEADING
                and blocks[j].heading_path == heading.heading_path
            ):
                j += 1
            if j > i + 1:
                question = heading.heading_path[-1] if heading.heading_path else collapse_whitespace(heading.text)
                pairs.append(QAPair(question, heading.start, blocks[j - 1].end))
        i = j
    return pairs


def faq_pairs(text: str, headings: Iterable[int] = ()) -> list[QAPair]:
    """Pairs marked in FAQ text: a question line ("Q:", "问：", ...) followed by an answer line ("A:", "答：", ...).

    A pair runs from its question to the next question or heading (a Markdown '#' line, or one of the
    ``headings`` offsets); a question without an answer is not a pair.
    """
    questions = {m.start(): m.end() for m in _QUESTION_LINE.finditer(text)}
    answers = {m.start(): m.end() for m in _ANSWER_LINE.finditer(text)}
    heading_starts = {m.start() for m in _HEADING_LINE.finditer(text)} | set(headings)
    boundaries = sorted(
        [(pos, "q") for pos in questions]
        + [(pos, "a") for pos in answers if pos not in questions]
        + [(pos, "h") for pos in heading_starts if pos not in questions]
    )
    pairs: list[QAPair] = []
    asked: int | None = None  # start of the open question
    answered: int | None = None  # start of its answer
    for pos, kind in [*boundaries, (len(text), "h")]:
        if kind == "a":
            if asked is not None and answered is None:
                answered = pos
            continue
        if asked is not None and answered is not None:
            question = collapse_whitespace(text[questions[asked] : answered]).strip("*_ ")
            pairs.append(QAPair(question, asked, pos))
        asked = pos if kind == "q" else None
        answered = None
    return pairs
