"""Fixture builders for the parser tests: PDFs, DOCX files and text files are generated here, never committed."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from ragtune.types import Document

#: One line of a generated PDF page: (text, font size).
PdfLine = tuple[str, float]


def _pdf_bytes(pages: list[list[PdfLine]], metadata: dict[str, str] | None = None, **save_options: object) -> bytes:
    import pymupdf

    pdf = pymupdf.open()
    for lines in pages:
        page = pdf.new_page()
        y = 72.0
        for text, size in lines:
            # The built-in "china-s" font covers CJK; Helvetica covers Latin text.
            font = "china-s" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "helv"
            y += size * 1.2
            page.insert_text((72, y), text, fontsize=size, fontname=font)
            y += size * 2.5  # a gap wide enough that each line is its own text block
    if metadata:
        pdf.set_metadata(metadata)
    data = pdf.tobytes(**save_options)
    pdf.close()
    return data


@pytest.fixture
def make_pdf() -> Callable[..., bytes]:
    """``make_pdf([[("Title", 24), ("Body", 11)], [...page 2...]], metadata={...}, encryption=...)`` -> PDF bytes."""
    return _pdf_bytes


@pytest.fixture
def make_docx() -> Callable[[Callable[..., None]], bytes]:
    """``make_docx(build)`` calls ``build(document)`` on a new python-docx Document and returns its bytes."""

    def build_bytes(build: Callable[..., None]) -> bytes:
        import docx

        document = docx.Document()
        build(document)
        buffer = io.BytesIO()
        document.save(buffer)
        return buffer.getvalue()

    return build_bytes


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes | str], Path]:
    """``write_file("name.ext", bytes_or_utf8_text)`` -> path of the file written under ``tmp_path``."""

    def write(name: str, content: bytes | str) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


def assert_offsets_exact(document: Document) -> None:
    """Every block's span points at exactly its text in the document."""
    for block in document.blocks:
        assert document.text[block.start : block.end] == block.text


@pytest.fixture
def check_offsets() -> Callable[[Document], None]:
    return assert_offsets_exact
