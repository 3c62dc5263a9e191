"""A scanned PDF ingested into a real knowledge base is OCR'd, and its sentences are found by search."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragtune.kb import KnowledgeBase

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("tesseract") is None,
        reason="the tesseract binary is not installed (apt-get install tesseract-ocr tesseract-ocr-eng "
        "tesseract-ocr-chi-sim)",
    ),
]

TEXT_PAGE = "The cafeteria opens at eight in the morning and serves lunch until two in the afternoon."
SCANNED_PAGE = (
    "Boiler room safety rules. Any leak larger than five drops per minute must be reported to the duty "
    "engineer at once. Protective gloves and goggles are required when the pressure valves are opened."
)


def _pdf(text: str, *, scanned: bool) -> bytes:
    """A one-page PDF of ``text``; a scanned one holds only a picture of the page, as a scanner makes it."""
    import pymupdf

    source = pymupdf.open()
    source.new_page().insert_textbox(pymupdf.Rect(72, 72, 540, 720), text, fontsize=12)
    if not scanned:
        return source.tobytes()
    out = pymupdf.open()
    picture = source[0].get_pixmap(dpi=200, colorspace=pymupdf.csGRAY).tobytes("png")
    page = out.new_page(width=source[0].rect.width, height=source[0].rect.height)
    page.insert_image(page.rect, stream=picture)
    return out.tobytes(deflate=True)


@pytest.fixture()
def kb(tmp_path: Path, embedder):
    base = KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder)
    yield base
    base.close()


def test_scanned_page_is_searchable(kb: KnowledgeBase, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "boiler-rules.pdf").write_bytes(_pdf(SCANNED_PAGE, scanned=True))
    (docs / "cafeteria.pdf").write_bytes(_pdf(TEXT_PAGE, scanned=False))
    (docs / "travel.md").write_text("# Travel\n\nBook flights through the travel desk two weeks ahead.\n")

    report = kb.ingest(docs)
    assert report.ok and len(report.added) == 3

    for mode in ("hybrid", "sparse", "dense"):
        hits = kb.search("who must a leak of five drops per minute be reported to", k=3, mode=mode)
        top = hits[0]
        assert top.source.endswith("boiler-rules.pdf"), mode
        assert "duty engineer" in top.text
        assert top.meta.is_ocr is True and top.meta.page_number == 1 and top.meta.source_type == "pdf", mode

    cafeteria = kb.search("when does the cafeteria open", k=1)[0]
    assert cafeteria.source.endswith("cafeteria.pdf") and cafeteria.meta.is_ocr is False
