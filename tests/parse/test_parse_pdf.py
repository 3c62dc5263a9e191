"""Tests for the PDF parser: pages, headings, metadata, encryption and damaged files."""

from __future__ import annotations

import pytest

from ragtune.errors import ParseError
from ragtune.parse import parse, parse_pdf, pdf_date_to_iso
from ragtune.types import BlockType

pytestmark = pytest.mark.unit

BODY = 11.0
PAGES = [
    [
        ("Annual Report", 24),
        ("Introduction", 16),
        ("This report covers the year.", BODY),
        ("Revenue grew in every region.", BODY),
    ],
    [("Results", 16), ("Sales rose by ten percent.", BODY), ("Details", 13), ("Costs fell slightly.", BODY)],
    [("Closing remarks on page three.", BODY)],
]
METADATA = {
    "title": "Annual Report 2023",
    "author": "Finance Team",
    "creationDate": "D:20240102030405+01'00'",
    "modDate": "D:20240203",
}


@pytest.fixture
def report(make_pdf) -> bytes:
    return make_pdf(PAGES, metadata=METADATA)


class TestParsePdf:
    def test_pages_and_types(self, report: bytes, check_offsets) -> None:
        document = parse(report, filename="report.pdf")
        assert document.source_type == "pdf"
        assert [(b.type, b.text, b.page_number) for b in document.blocks] == [
            (BlockType.HEADING, "Annual Report", 1),
            (BlockType.HEADING, "Introduction", 1),
            (BlockType.PARAGRAPH, "This report covers the year.", 1),
            (BlockType.PARAGRAPH, "Revenue grew in every region.", 1),
            (BlockType.HEADING, "Results", 2),
            (BlockType.PARAGRAPH, "Sales rose by ten percent.", 2),
            (BlockType.HEADING, "Details", 2),
            (BlockType.PARAGRAPH, "Costs fell slightly.", 2),
            (BlockType.PARAGRAPH, "Closing remarks on page three.", 3),
        ]
        assert document.metadata["page_count"] == 3
        check_offsets(document)

    def test_heading_levels_and_paths(self, report: bytes) -> None:
        document = parse(report, filename="report.pdf")
        headings = [(b.text, b.level, b.heading_path) for b in document.blocks if b.type is BlockType.HEADING]
        assert headings == [
            ("Annual Report", 1, ["Annual Report"]),
            ("Introduction", 2, ["Annual Report", "Introduction"]),
            ("Results", 2, ["Annual Report", "Results"]),
            ("Details", 3, ["Annual Report", "Results", "Details"]),
        ]
        by_text = {b.text: b for b in document.blocks}
        assert by_text["Costs fell slightly."].heading_path == ["Annual Report", "Results", "Details"]
        assert by_text["Closing remarks on page three."].heading_path == ["Annual Report", "Results", "Details"]

    def test_metadata(self, report: bytes) -> None:
        document = parse(report, filename="report.pdf")
        assert document.title == "Annual Report 2023"
        assert document.author == "Finance Team"
        assert document.created_at == "2024-01-02T03:04:05+01:00"
        assert document.last_modified == "2024-02-03"
        assert document.language == "en"

    def test_title_falls_back_to_first_heading(self, make_pdf) -> None:
        document = parse(make_pdf(PAGES), filename="untitled.pdf")
        assert document.title == "Annual Report"
        assert document.author is None

    def test_path_input(self, report: bytes, write_file) -> None:
        path = write_file("report.pdf", report)
        document = parse(path)
        assert document.source == str(path)
        assert len(document.blocks) == 9

    def test_max_pages(self, report: bytes) -> None:
        document = parse_pdf(report, "report.pdf", max_pages=2)
        assert {b.page_number for b in document.blocks} == {1, 2}
        assert document.metadata == {"page_count": 3, "pages_parsed": 2}
        with pytest.raises(ValueError):
            parse_pdf(report, "report.pdf", max_pages=0)

    def test_lines_of_a_block_join(self) -> None:
        import pymupdf

        pdf = pymupdf.open()
        page = pdf.new_page()
        page.insert_text((72, 72), "An exam-\nple paragraph\nthat wraps.\n- first point\n2. second point", fontsize=11)
        document = parse(pdf.tobytes(), filename="wrap.pdf")
        assert document.blocks[0].text == "An example paragraph that wraps.\n- first point\n2. second point"

    def test_chinese(self, make_pdf, check_offsets) -> None:
        pages = [[("员工手册", 20), ("本办法适用于公司全体员工。", 11), ("员工应当遵守劳动纪律。", 11)]]
        document = parse(make_pdf(pages), filename="手册.pdf")
        assert [(b.type, b.text) for b in document.blocks] == [
            (BlockType.HEADING, "员工手册"),
            (BlockType.PARAGRAPH, "本办法适用于公司全体员工。"),
            (BlockType.PARAGRAPH, "员工应当遵守劳动纪律。"),
        ]
        assert document.language == "zh"
        check_offsets(document)

    def test_encrypted(self, make_pdf) -> None:
        import pymupdf

        data = make_pdf(PAGES, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="secret")
        with pytest.raises(ParseError) as info:
            parse(data, filename="locked.pdf")
        assert info.value.source == "locked.pdf"
        assert "encrypted" in info.value.cause

    def test_encrypted_with_empty_user_password_opens(self, make_pdf) -> None:
        import pymupdf

        data = make_pdf(PAGES, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="")
        assert parse(data, filename="restricted.pdf").blocks[0].text == "Annual Report"

    @pytest.mark.parametrize("keep", [0.1, 0.3, 0.6, 0.95])
    def test_truncated(self, report: bytes, keep: float) -> None:
        with pytest.raises(ParseError) as info:
            parse(report[: int(len(report) * keep)], filename="cut.pdf")
        assert info.value.source == "cut.pdf"
        assert "PDF" in info.value.cause

    def test_repaired_but_complete_pdf_is_read(self, report: bytes) -> None:
        # A wrong cross-reference offset is common in the wild; viewers open such files, and so do we.
        damaged = report.replace(b"startxref\n", b"startxref\n9", 1)
        document = parse(damaged, filename="xref.pdf")
        assert document.metadata.get("repaired") is True
        assert document.blocks[0].text == "Annual Report"

    def test_not_a_pdf(self, write_file) -> None:
        path = write_file("fake.pdf", b"this is not a pdf at all" * 10)
        with pytest.raises(ParseError, match="not a valid PDF") as info:
            parse(path)
        assert info.value.source == str(path)

    def test_empty_file(self) -> None:
        with pytest.raises(ParseError, match="empty.pdf: not a valid PDF"):
            parse(b"", filename="empty.pdf")

    def test_no_text(self, make_pdf) -> None:
        with pytest.raises(ParseError, match="no extractable text .*'ocr' extra"):
            parse(make_pdf([[], []]), filename="scan.pdf")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("D:20240102030405+01'00'", "2024-01-02T03:04:05+01:00"),
        ("D:20240102030405-05'30", "2024-01-02T03:04:05-05:30"),
        ("D:20240102030405Z", "2024-01-02T03:04:05+00:00"),
        ("D:20240102030405Z00'00'", "2024-01-02T03:04:05+00:00"),
        ("D:202401020304", "2024-01-02T03:04:00"),
        ("20240102", "2024-01-02"),
        ("D:2024", "2024-01-01"),
        ("D:20241340", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
@pytest.mark.unit
def test_pdf_date_to_iso(value: str | None, expected: str | None) -> None:
    assert pdf_date_to_iso(value) == expected
