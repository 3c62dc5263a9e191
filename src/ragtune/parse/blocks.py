"""Block helpers shared by the format parsers: whitespace, Markdown tables, heading paths, document assembly."""

from __future__ import annotations

from typing import Any

from ragtune.text import detect_language
from ragtune.types import Block, BlockType, Document


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines included) become one space; the ends are stripped."""
    return " ".join(text.split())


def markdown_table(rows: list[list[str]]) -> str:
    """Render rows of cell texts as a Markdown pipe table; the first row is the header.

    Cells are flattened to one line with ``|`` escaped, and short rows are padded so every row has the
    same number of columns.
    """
    cleaned = [[collapse_whitespace(cell).replace("|", "\\|") for cell in row] for row in rows if row]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    padded = [row + [""] * (width - len(row)) for row in cleaned]
    lines = ["| " + " | ".join(padded[0]) + " |", "| " + " | ".join(["---"] * width) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in padded[1:]]
    return "\n".join(lines)


class HeadingPath:
    """Tracks the enclosing headings while blocks are read in document order."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, text: str) -> list[str]:
        """Record a heading; returns its own path (the enclosing headings, then itself)."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))
        return self.path

    @property
    def path(self) -> list[str]:
        """Texts of the headings enclosing the current position, outermost first."""
        return [text for _, text in self._stack]


def build_document(blocks: list[Block], *, source: str, source_type: str, **fields: Any) -> Document:
    """Assemble blocks into a Document, filling ``language`` and, when missing, ``title`` from the first heading."""
    document = Document.assemble(blocks, source=source, source_type=source_type, **fields)
    if document.language is None:
        document.language = detect_language(document.text)
    if document.title is None:
        document.title = next((b.text for b in document.blocks if b.type is BlockType.HEADING), None)
    return document


def clean_metadata(value: object) -> str | None:
    """A metadata string stripped, with empty or missing values as None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
