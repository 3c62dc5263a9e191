"""Tests for the PDF parser: pages, headings, tables, reading order, metadata, limits, encryption, damaged files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from ragtune.errors import ParseError
from ragtune.parse import ParseOptions, parse, parse_pdf, pdf_date_to_iso
from ragtune.types import BlockType, Document

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pdf"

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
        with pytest.raises(ParseError, match="no extractable text .*blank"):
            parse(make_pdf([[], []]), filename="blank.pdf")

    def test_max_pages_from_options_and_argument(self, report: bytes) -> None:
        document = parse(report, filename="report.pdf", options=ParseOptions(max_pages=1))
        assert {b.page_number for b in document.blocks} == {1}
        assert document.metadata["pages_parsed"] == 1
        with pytest.MonkeyPatch.context() as patch:
            from ragtune.parse import options as base

            patch.setattr(base, "_DEFAULT_OPTIONS", ParseOptions(max_pages=1))
            # An explicit max_pages argument wins over the options.
            assert parse_pdf(report, "report.pdf", max_pages=2).metadata["pages_parsed"] == 2
            assert parse_pdf(report, "report.pdf").metadata["pages_parsed"] == 1


def _markdown_cells(markdown: str) -> list[list[str]]:
    """Rows of cells of a Markdown pipe table, without the delimiter row."""
    rows = [[cell.strip() for cell in line.strip()[1:-1].split(" | ")] for line in markdown.splitlines()]
    return [row for i, row in enumerate(rows) if i != 1]


def _ruled_table(page: Any, top: float, rows: list[list[str]], *, left: float = 72, width: float = 110) -> float:
    """Draw ``rows`` as a table with ruled cell borders; returns the bottom edge."""
    height = 20.0
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            cell = (left + c * width, top + r * height, left + (c + 1) * width, top + (r + 1) * height)
            page.draw_rect(cell, color=(0, 0, 0), width=0.7)
            font = "china-s" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "helv"
            page.insert_text((cell[0] + 4, cell[3] - 6), text, fontsize=10, fontname=font)
    return top + len(rows) * height


SALES = [["Region", "Q1", "Q2"], ["North", "120", "135"], ["South", "98", "101"], ["West", "77", "84"]]


def _table_pdf(caption: str | None, rows: list[list[str]] = SALES) -> bytes:
    import pymupdf

    pdf = pymupdf.open()
    page = pdf.new_page()
    page.insert_text((72, 80), "Sales were steady across the regions this year.", fontsize=11)
    top = 130.0
    if caption:
        font = "china-s" if any("\u4e00" <= ch <= "\u9fff" for ch in caption) else "helv"
        page.insert_text((72, top - 8), caption, fontsize=10, fontname=font)
    bottom = _ruled_table(page, top, rows)
    page.insert_text((72, bottom + 40), "The West region is expected to recover next year.", fontsize=11)
    data = pdf.tobytes()
    pdf.close()
    return data


class TestTables:
    def test_cells_match_tabula_gold(self, check_offsets) -> None:
        """tabula-py's data.pdf (mtcars) page 1 against the CSV tabula's own tests expect, cell by cell."""
        document = parse(FIXTURES / "data.pdf")
        table = next(b for b in document.blocks if b.type is BlockType.TABLE and b.page_number == 1)
        with (FIXTURES / "data_1.csv").open(encoding="utf-8", newline="") as handle:
            gold = list(csv.reader(handle))
        assert _markdown_cells(table.text) == gold
        check_offsets(document)

    def test_table_text_is_not_repeated_as_paragraphs(self) -> None:
        document = parse(FIXTURES / "data.pdf")
        assert document.text.count("Mazda RX4 Wag") == 1
        assert not any("Mazda" in b.text for b in document.blocks if b.type is not BlockType.TABLE)

    @pytest.mark.parametrize("caption", ["Table 2: Quarterly sales by region", "表2 各地区季度销售额"])
    def test_table_in_place_with_caption(self, caption: str, check_offsets) -> None:
        document = parse(_table_pdf(caption), filename="sales.pdf")
        assert [b.type for b in document.blocks] == [
            BlockType.PARAGRAPH,
            BlockType.PARAGRAPH,
            BlockType.TABLE,
            BlockType.PARAGRAPH,
        ]
        table = document.blocks[2]
        assert table.caption == caption
        assert _markdown_cells(table.text) == SALES
        assert table.text.splitlines()[1] == "| --- | --- | --- |"
        assert document.blocks[1].text == caption
        assert document.text.count("North") == 1
        check_offsets(document)

    def test_table_without_caption(self) -> None:
        document = parse(_table_pdf(None), filename="sales.pdf")
        tables = [b for b in document.blocks if b.type is BlockType.TABLE]
        assert len(tables) == 1 and tables[0].caption is None

    def test_caption_reaches_chunk_metadata(self) -> None:
        from ragtune.chunk.recursive import RecursiveChunker

        document = parse(_table_pdf("Table 2: Quarterly sales by region"), filename="sales.pdf")
        chunks = RecursiveChunker().split(document)
        assert any(c.meta.table_caption == "Table 2: Quarterly sales by region" for c in chunks if "North" in c.text)

    @pytest.mark.parametrize(
        "rows",
        [
            [["Region", "Q1", "Q2"]],  # one row
            [["Region"], ["North"], ["South"]],  # one column
            [["Region", "", ""], ["", "", ""], ["", "", "South"]],  # mostly empty
        ],
    )
    def test_degenerate_grids_stay_text(self, rows: list[list[str]]) -> None:
        document = parse(_table_pdf(None, rows), filename="grid.pdf")
        assert not any(b.type is BlockType.TABLE for b in document.blocks)
        assert "Region" in document.text

    def test_framed_paragraph_is_not_a_table(self) -> None:
        import pymupdf

        pdf = pymupdf.open()
        page = pdf.new_page()
        page.draw_rect((60, 60, 400, 120), color=(0, 0, 0), width=1)
        page.insert_text((72, 90), "Note: offices close early on Friday.", fontsize=11)
        document = parse(pdf.tobytes(), filename="note.pdf")
        assert [(b.type, b.text) for b in document.blocks] == [
            (BlockType.PARAGRAPH, "Note: offices close early on Friday.")
        ]

    def test_table_finder_runs_only_on_pages_with_a_ruling_grid(self, monkeypatch) -> None:
        import pymupdf

        from ragtune.parse import pdf as pdf_module

        pdf = pymupdf.open()
        plain = pdf.new_page()
        plain.insert_text((72, 90), "Plain prose without any drawing.", fontsize=11)
        listing = pdf.new_page()  # a code listing on a shaded background: filled, not ruled
        listing.draw_rect((60, 60, 400, 160), color=None, fill=(0.9, 0.9, 0.9))
        listing.insert_text((72, 90), "print('hello')", fontsize=10)
        framed = pdf.new_page()
        framed.draw_rect((60, 60, 400, 120), color=(0, 0, 0), width=1)
        _ruled_table(pdf.new_page(), 100, SALES)
        assert [pdf_module._has_ruling_grid(page) for page in pdf] == [False, False, True, True]
        calls: list[int] = []
        finder = pymupdf.Page.find_tables
        monkeypatch.setattr(pymupdf.Page, "find_tables",
                            lambda page, **kw: calls.append(page.number) or finder(page, **kw))
        document = parse(pdf.tobytes(), filename="mixed.pdf")
        assert calls == [2, 3]  # a framed box could be a one-cell grid; the finder then rejects it
        assert [b.page_number for b in document.blocks if b.type is BlockType.TABLE] == [4]


def _texts(document: Document) -> list[str]:
    return [b.text for b in document.blocks]


class TestReadingOrder:
    def test_two_columns_under_a_full_width_title(self) -> None:
        import pymupdf

        pdf = pymupdf.open()
        page = pdf.new_page()
        page.insert_text((72, 60), "Two Column Newsletter Title Spanning The Page", fontsize=20)
        # Paragraph tops in the two columns line up, which fools a top-to-bottom sort.
        for column, x in (("Left", 72), ("Right", 320)):
            for n, y in enumerate((120, 220, 320), 1):
                box = pymupdf.Rect(x, y, x + 220, y + 80)
                page.insert_textbox(box, f"{column} column paragraph {n} continues on this line.", fontsize=11)
        document = parse(pdf.tobytes(), filename="news.pdf")
        assert _texts(document) == [
            "Two Column Newsletter Title Spanning The Page",
            *[f"Left column paragraph {n} continues on this line." for n in (1, 2, 3)],
            *[f"Right column paragraph {n} continues on this line." for n in (1, 2, 3)],
        ]

    def test_label_value_rows_stay_rows(self) -> None:
        # A form's label and value on one baseline must not be torn into a label column and a value column.
        import pymupdf

        pdf = pymupdf.open()
        page = pdf.new_page()
        rows = [("Name", "Alice"), ("Team", "Finance"), ("Office", "Berlin")]
        for y, (label, value) in zip((100, 140, 180), rows, strict=True):
            page.insert_text((72, y), label, fontsize=11)
            page.insert_text((300, y), value, fontsize=11)
        document = parse(pdf.tobytes(), filename="form.pdf")
        assert " ".join(_texts(document)) == "Name Alice Team Finance Office Berlin"


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
