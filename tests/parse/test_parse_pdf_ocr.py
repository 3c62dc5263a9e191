"""Tests for OCR of scanned PDF pages: accuracy against gold text, Chinese, mixed PDFs, OCR modes and failures."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse import ParseOptions, parse
from ragtune.parse.ocr import OcrUnavailableError, join_words, ocr_page_image
from ragtune.types import BlockType

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pdf"

requires_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="the tesseract binary is not installed (apt-get install tesseract-ocr tesseract-ocr-eng "
    "tesseract-ocr-chi-sim)",
)

ENGLISH = (
    "Quarterly maintenance schedule for the pumping station. "
    "The inspection team checks every valve, gauge and seal before the first of each month. "
    "Replacement parts are ordered from the central warehouse at least two weeks in advance. "
    "Any leak larger than five drops per minute must be reported to the duty engineer at once."
)
CHINESE = (
    "员工手册第三章规定了请假与加班制度。员工请病假须提供医院证明，年假应提前两周申请。"
    "加班须经部门经理书面批准，加班费按国家规定标准支付。"
)


def text_pdf(pages: list[str]) -> bytes:
    """A PDF with a real text layer, one text box per page."""
    import pymupdf

    pdf = pymupdf.open()
    for text in pages:
        page = pdf.new_page()
        cjk = any("\u4e00" <= ch <= "\u9fff" for ch in text)
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 720), text, fontsize=12, fontname="china-s" if cjk else "helv")
    data = pdf.tobytes()
    pdf.close()
    return data


def scanned(pdf_bytes: bytes, *, pages: set[int] | None = None, dpi: int = 200) -> bytes:
    """The same PDF with the chosen 1-based pages (all by default) replaced by a greyscale picture of themselves."""
    import pymupdf

    source = pymupdf.open(stream=pdf_bytes, filetype="pdf")
    out = pymupdf.open()
    for index, page in enumerate(source):
        if pages is not None and index + 1 not in pages:
            out.insert_pdf(source, from_page=index, to_page=index)
            continue
        picture = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).tobytes("png")
        new = out.new_page(width=page.rect.width, height=page.rect.height)
        new.insert_image(new.rect, stream=picture)
    data = out.tobytes(deflate=True)
    out.close()
    return data


def similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / length of the longer text, on whitespace-normalised text."""
    a, b = " ".join(a.split()), " ".join(b.split())
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


@pytest.mark.unit
def test_similarity_measure() -> None:
    assert similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert similarity("a  b\nc", "a b c") == 1.0


@pytest.mark.unit
def test_join_words_drops_spaces_only_between_cjk() -> None:
    assert join_words(["员", "工", "手册", "v2", "版本"]) == "员工手册 v2 版本"
    assert join_words(["Hello", "world", "。"]) == "Hello world 。"


@requires_tesseract
@pytest.mark.integration
class TestScannedPages:
    def test_english_scan(self, check_offsets) -> None:
        document = parse(scanned(text_pdf([ENGLISH])), filename="scan.pdf")
        assert similarity(document.text, ENGLISH) >= 0.97
        assert document.blocks and all(b.is_ocr and b.page_number == 1 for b in document.blocks)
        assert all(b.type is BlockType.PARAGRAPH for b in document.blocks)
        assert document.metadata["ocr_pages"] == [1]
        assert document.language == "en"
        check_offsets(document)

    def test_chinese_scan(self, check_offsets) -> None:
        document = parse(scanned(text_pdf([CHINESE])), filename="扫描件.pdf")
        # Chinese has no spaces between words; OCR output must not invent them either.
        assert similarity(document.text.replace(" ", ""), CHINESE) >= 0.95
        assert "加班费按国家规定标准支付" in document.text.replace("\n", "")
        assert document.language == "zh"
        assert all(b.is_ocr for b in document.blocks)
        check_offsets(document)

    def test_mixed_pdf_is_handled_page_by_page(self, check_offsets) -> None:
        pages = ["Page one has a real text layer.", ENGLISH, "Page three is text again."]
        document = parse(scanned(text_pdf(pages), pages={2}), filename="mixed.pdf")
        by_page = {n: [b for b in document.blocks if b.page_number == n] for n in (1, 2, 3)}
        assert [b.text for b in by_page[1]] == ["Page one has a real text layer."]
        assert [b.text for b in by_page[3]] == ["Page three is text again."]
        assert not any(b.is_ocr for b in by_page[1] + by_page[3])
        assert by_page[2] and all(b.is_ocr for b in by_page[2])
        assert similarity(" ".join(b.text for b in by_page[2]), ENGLISH) >= 0.97
        assert document.metadata["ocr_pages"] == [2]
        check_offsets(document)

    def test_ocr_off_skips_scanned_pages_with_a_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        data = scanned(text_pdf(["Page one has a real text layer.", ENGLISH]), pages={2})
        with caplog.at_level(logging.WARNING, logger="ragtune.parse.pdf"):
            document = parse(data, filename="mixed.pdf", options=ParseOptions(ocr="off"))
        assert [b.text for b in document.blocks] == ["Page one has a real text layer."]
        assert document.metadata["unread_scanned_pages"] == [2]
        assert "OCR is off" in caplog.text

    def test_ocr_off_on_a_fully_scanned_pdf_raises(self) -> None:
        with pytest.raises(ParseError, match="no extractable text .*OCR is off .*ocr='auto'"):
            parse(scanned(text_pdf([ENGLISH])), filename="scan.pdf", options=ParseOptions(ocr="off"))

    def test_force_ocrs_pages_that_have_text(self) -> None:
        document = parse(text_pdf([ENGLISH]), filename="text.pdf", options=ParseOptions(ocr="force"))
        assert all(b.is_ocr for b in document.blocks)
        assert similarity(document.text, ENGLISH) >= 0.97

    def test_timeout_is_a_parse_error(self) -> None:
        options = ParseOptions(ocr_timeout_s=0.001)
        with pytest.raises(ParseError, match="page 1: OCR stopped, Tesseract took longer than .*ocr_timeout_s") as info:
            parse(scanned(text_pdf([ENGLISH])), filename="slow.pdf", options=options)
        assert info.value.source == "slow.pdf"

    def test_missing_language_data_is_a_parse_error(self) -> None:
        options = ParseOptions(ocr_languages="xx_nonexistent")
        with pytest.raises(ParseError, match="page 1 has no text layer and Tesseract has no language data"):
            parse(scanned(text_pdf([ENGLISH])), filename="scan.pdf", options=options)

    def test_partly_missing_language_data_warns_and_reads(self, caplog: pytest.LogCaptureFixture) -> None:
        options = ParseOptions(ocr_languages="eng+yy_nonexistent")
        with caplog.at_level(logging.WARNING, logger="ragtune.parse.ocr"):
            document = parse(scanned(text_pdf([ENGLISH])), filename="scan.pdf", options=options)
        assert similarity(document.text, ENGLISH) >= 0.97
        assert "yy_nonexistent" in caplog.text


@pytest.mark.unit
def test_no_ocr_engine_is_a_parse_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract binary on it
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # and RapidOCR not importable
    with pytest.raises(ParseError) as info:
        parse(scanned(text_pdf([ENGLISH])), filename="scan.pdf")
    assert info.value.cause.startswith("page 1 has no text layer and OCR is not available — install Tesseract")
    assert "rapidocr-onnxruntime" in info.value.cause
    with pytest.raises(OcrUnavailableError):
        ocr_page_image(b"not used")


@pytest.mark.unit
def test_blank_pages_are_not_ocrd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pymupdf

    monkeypatch.setenv("PATH", str(tmp_path))  # OCR would fail loudly if it were attempted
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    pdf = pymupdf.open()
    pdf.new_page()
    pdf.new_page().insert_text((72, 72), "Only page two has text.")
    document = parse(pdf.tobytes(), filename="blank-first.pdf")
    assert [(b.text, b.page_number, b.is_ocr) for b in document.blocks] == [("Only page two has text.", 2, False)]


@requires_tesseract
@pytest.mark.integration
@pytest.mark.slow
def test_real_scan_matches_gold_text() -> None:
    """ocrmypdf's linn.pdf: a 300 dpi two-column brochure scan, against its reference transcription."""
    document = parse(FIXTURES / "linn.pdf", options=ParseOptions(ocr_languages="eng"))
    gold = (FIXTURES / "linn.txt").read_text(encoding="utf-8")
    assert similarity(document.text, gold) >= 0.95
    assert all(b.is_ocr and b.page_number == 1 for b in document.blocks)
    # Columns stay apart: the left column's paragraph comes whole, before the right column's heading.
    text = " ".join(document.text.split())
    assert "the first track will play in perfect sync" in text.replace("‘", " ").replace("ﬁ", "fi").replace("  ", " ")
    assert text.index("Recording a Sequence") < text.index("Additional Features")


@pytest.mark.integration
@pytest.mark.slow
def test_rapidocr_engine_reads_chinese() -> None:
    import pymupdf
    import rapidocr_onnxruntime  # noqa: F401  (the 'ocr' extra; make install includes it)

    pdf = pymupdf.open(stream=text_pdf([CHINESE]), filetype="pdf")
    png = pdf[0].get_pixmap(dpi=200, colorspace=pymupdf.csGRAY).tobytes("png")
    lines = ocr_page_image(png, dpi=200, engine="rapidocr")
    assert similarity("".join(line.text for line in lines), CHINESE) >= 0.95
    assert all(line.bbox[2] > line.bbox[0] and line.bbox[3] > line.bbox[1] for line in lines)
