"""Tests for the Word parser: styles, lists, tables in order, core properties and damaged files."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse import parse
from ragtune.parse.spreadsheet import table_cells
from ragtune.types import BlockType

pytestmark = pytest.mark.unit


def build_policy(doc) -> None:
    doc.add_heading("Travel Policy", 0)
    doc.add_paragraph("This policy covers business travel.")
    doc.add_heading("Booking", 1)
    doc.add_paragraph("Book through the portal.")
    doc.add_paragraph("Economy class by default", style="List Bullet")
    doc.add_paragraph("Hotels under the cap", style="List Bullet")
    doc.add_paragraph("Ask your manager first", style="List Bullet 2")
    doc.add_paragraph("Submit the form", style="List Number")
    doc.add_heading("Limits", 2)
    doc.add_paragraph("Daily limits", style="Caption")
    table = doc.add_table(rows=3, cols=3)
    for r, row in enumerate([["City", "Hotel | night", "Meals"], ["London", "200", "60"], ["Paris", "180", ""]]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    doc.add_paragraph("Limits are reviewed yearly.")
    doc.add_heading("Claims", 1)
    merged = doc.add_table(rows=2, cols=3)
    merged.cell(0, 0).text = "Step"
    merged.cell(0, 1).text = "Details"
    merged.cell(0, 1).merge(merged.cell(0, 2))
    merged.cell(1, 0).text = "1"
    merged.cell(1, 1).text = "Receipts"
    merged.cell(1, 2).text = "Within 30 days"
    doc.add_paragraph("")
    doc.add_paragraph("Questions go to HR.")
    props = doc.core_properties
    props.author = "People Ops"
    props.title = "Travel Policy 2024"
    props.created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    props.modified = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture
def policy(make_docx) -> bytes:
    return make_docx(build_policy)


class TestParseDocx:
    def test_blocks_in_document_order(self, policy: bytes, check_offsets) -> None:
        document = parse(policy, filename="policy.docx")
        assert document.source_type == "docx"
        assert [(b.type, b.text.split("\n")[0]) for b in document.blocks] == [
            (BlockType.HEADING, "Travel Policy"),
            (BlockType.PARAGRAPH, "This policy covers business travel."),
            (BlockType.HEADING, "Booking"),
            (BlockType.PARAGRAPH, "Book through the portal."),
            (BlockType.LIST, "- Economy class by default"),
            (BlockType.HEADING, "Limits"),
            (BlockType.PARAGRAPH, "Daily limits"),
            (BlockType.TABLE, "| City | Hotel \\| night | Meals |"),
            (BlockType.PARAGRAPH, "Limits are reviewed yearly."),
            (BlockType.HEADING, "Claims"),
            (BlockType.TABLE, "| Step | Details |  |"),
            (BlockType.PARAGRAPH, "Questions go to HR."),
        ]
        assert all(b.page_number is None for b in document.blocks)
        check_offsets(document)

    def test_headings(self, policy: bytes) -> None:
        document = parse(policy, filename="policy.docx")
        headings = [(b.text, b.level, b.heading_path) for b in document.blocks if b.type is BlockType.HEADING]
        assert headings == [
            ("Travel Policy", 1, ["Travel Policy"]),
            ("Booking", 1, ["Booking"]),
            ("Limits", 2, ["Booking", "Limits"]),
            ("Claims", 1, ["Claims"]),
        ]
        table = next(b for b in document.blocks if b.type is BlockType.TABLE)
        assert table.heading_path == ["Booking", "Limits"]

    def test_list_items_merge(self, policy: bytes) -> None:
        document = parse(policy, filename="policy.docx")
        lists = [b.text for b in document.blocks if b.type is BlockType.LIST]
        assert lists == [
            "- Economy class by default\n- Hotels under the cap\n  - Ask your manager first\n- Submit the form"
        ]

    def test_tables(self, policy: bytes) -> None:
        document = parse(policy, filename="policy.docx")
        first, second = [b for b in document.blocks if b.type is BlockType.TABLE]
        assert first.text.split("\n") == [
            "| City | Hotel \\| night | Meals |",
            "| --- | --- | --- |",
            "| London | 200 | 60 |",
            "| Paris | 180 |  |",
        ]
        assert first.caption == "Daily limits"
        assert second.text.split("\n") == [
            "| Step | Details |  |",
            "| --- | --- | --- |",
            "| 1 | Receipts | Within 30 days |",
        ]
        assert second.caption is None

    def test_core_properties(self, policy: bytes) -> None:
        document = parse(policy, filename="policy.docx")
        assert document.title == "Travel Policy 2024"
        assert document.author == "People Ops"
        assert document.created_at == "2024-01-02T03:04:05+00:00"
        assert document.last_modified == "2024-02-03T04:05:06+00:00"
        assert document.language == "en"

    def test_numbered_paragraph_is_list(self, make_docx) -> None:
        def build(doc) -> None:
            from docx.oxml import OxmlElement
            from docx.oxml.ns import qn

            doc.add_paragraph("Intro")
            for level, text in [(0, "one"), (1, "one.a")]:
                paragraph = doc.add_paragraph(text)
                num_pr = OxmlElement("w:numPr")
                ilvl = OxmlElement("w:ilvl")
                ilvl.set(qn("w:val"), str(level))
                num_id = OxmlElement("w:numId")
                num_id.set(qn("w:val"), "1")
                num_pr.append(ilvl)
                num_pr.append(num_id)
                paragraph._p.get_or_add_pPr().append(num_pr)

        document = parse(make_docx(build), filename="numbered.docx")
        assert [(b.type, b.text) for b in document.blocks] == [
            (BlockType.PARAGRAPH, "Intro"),
            (BlockType.LIST, "- one\n  - one.a"),
        ]

    def test_chinese(self, make_docx, write_file, check_offsets) -> None:
        def build(doc) -> None:
            doc.add_heading("员工手册", 1)
            doc.add_heading("考勤制度", 2)
            doc.add_paragraph("员工应当按时上下班，迟到三次按旷工半天处理。")
            table = doc.add_table(rows=2, cols=2)
            table.cell(0, 0).text = "项目"
            table.cell(0, 1).text = "说明"
            table.cell(1, 0).text = "迟到"
            table.cell(1, 1).text = "扣款"
            doc.core_properties.author = "张三"

        document = parse(write_file("手册.docx", make_docx(build)))
        assert document.blocks[2].text == "员工应当按时上下班，迟到三次按旷工半天处理。"
        assert document.blocks[2].heading_path == ["员工手册", "考勤制度"]
        assert document.blocks[3].text.split("\n")[2] == "| 迟到 | 扣款 |"
        assert document.author == "张三"
        assert document.title == "员工手册"
        assert document.language == "zh"
        check_offsets(document)

    def test_empty_document(self, make_docx) -> None:
        document = parse(make_docx(lambda doc: None), filename="blank.docx")
        assert document.text == ""
        assert document.blocks == []

    def test_random_bytes(self, write_file) -> None:
        path = write_file("random.docx", bytes(range(256)) * 8)
        with pytest.raises(ParseError, match="not a valid DOCX") as info:
            parse(path)
        assert info.value.source == str(path)

    def test_zip_without_word_parts(self) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("hello.txt", "not word")
        with pytest.raises(ParseError, match="other.docx: not a valid DOCX"):
            parse(buffer.getvalue(), filename="other.docx")

    def test_truncated(self, policy: bytes) -> None:
        with pytest.raises(ParseError, match="cut.docx: not a valid DOCX"):
            parse(policy[: len(policy) // 2], filename="cut.docx")

    def test_encrypted_or_legacy(self) -> None:
        ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
        with pytest.raises(ParseError, match="locked.docx: .*encrypted or legacy"):
            parse(ole2, filename="locked.docx")


FIXTURES = Path(__file__).parents[1] / "fixtures" / "office"


class TestDocxTables:
    def test_vertical_and_horizontal_merges_show_text_once(self, make_docx) -> None:
        def build(doc) -> None:
            table = doc.add_table(rows=4, cols=3)
            for c, text in enumerate(["Team", "Quarter", "Budget"]):
                table.cell(0, c).text = text
            table.cell(1, 0).merge(table.cell(2, 0)).text = "Platform"
            table.cell(1, 1).text, table.cell(1, 2).text = "Q1", "10"
            table.cell(2, 1).text, table.cell(2, 2).text = "Q2", "12"
            table.cell(3, 0).merge(table.cell(3, 1)).text = "Total"
            table.cell(3, 2).text = "22"

        document = parse(make_docx(build), filename="budget.docx")
        (table,) = document.blocks
        assert table_cells(table.text) == [
            ["Team", "Quarter", "Budget"],
            ["Platform", "Q1", "10"],
            ["", "Q2", "12"],
            ["Total", "", "22"],
        ]

    def test_nested_table_follows_its_parent(self, make_docx, check_offsets) -> None:
        def build(doc) -> None:
            doc.add_heading("Vendors", 1)
            outer = doc.add_table(rows=2, cols=2)
            outer.cell(0, 0).text, outer.cell(0, 1).text = "Vendor", "Rates"
            outer.cell(1, 0).text = "Acme"
            outer.cell(1, 1).text = "See below"
            inner = outer.cell(1, 1).add_table(rows=2, cols=2)
            inner.cell(0, 0).text, inner.cell(0, 1).text = "Item", "Price"
            inner.cell(1, 0).text, inner.cell(1, 1).text = "Bolt", "0.10"
            doc.add_paragraph("Table 1: Vendor rates")  # a typed caption below the table
            doc.add_paragraph("After the tables.")

        document = parse(make_docx(build), filename="vendors.docx")
        assert [b.type for b in document.blocks] == [
            BlockType.HEADING,
            BlockType.TABLE,
            BlockType.TABLE,
            BlockType.PARAGRAPH,
            BlockType.PARAGRAPH,
        ]
        outer, inner = document.blocks[1], document.blocks[2]
        assert (outer.caption, inner.caption) == ("Table 1: Vendor rates", None)
        assert table_cells(outer.text) == [["Vendor", "Rates"], ["Acme", "See below"]]
        assert table_cells(inner.text) == [["Item", "Price"], ["Bolt", "0.10"]]
        assert inner.heading_path == ["Vendors"]
        check_offsets(document)

    def test_typed_caption_and_empty_table(self, make_docx) -> None:
        def build(doc) -> None:
            doc.add_paragraph("表 3：差旅标准")
            table = doc.add_table(rows=2, cols=2)
            table.cell(0, 0).text, table.cell(0, 1).text = "城市", "标准"
            table.cell(1, 0).text, table.cell(1, 1).text = "北京", "500"
            doc.add_table(rows=2, cols=2)  # an empty layout grid
            doc.add_paragraph(
                "Table 4 lists nothing; this sentence mentions a table but is long enough not to "
                "be mistaken for the caption of the table that follows it, because it goes on " * 2
            )
            other = doc.add_table(rows=1, cols=1)
            other.cell(0, 0).text = "x"

        document = parse(make_docx(build), filename="captions.docx")
        tables = [b for b in document.blocks if b.type is BlockType.TABLE]
        assert [t.caption for t in tables] == ["表 3：差旅标准", None]  # the empty grid left no block

    def test_python_docx_merged_cells_fixture(self, check_offsets) -> None:
        # tbl-cell-props.docx draws its layout in a comment: rows a-d, e-h, "i" spanning 2 columns, "l" 3, "n" 4.
        document = parse(FIXTURES / "tbl-cell-props.docx")
        (table,) = document.blocks
        assert table_cells(table.text) == [
            ["a", "b", "c", "d"],
            ["e", "f", "g", "h"],
            ["i", "", "j", "k"],
            ["l", "", "", "m"],
            ["n", "", "", ""],
        ]
        check_offsets(document)

    def test_python_docx_nested_fixture(self) -> None:
        document = parse(FIXTURES / "blk-paras-and-tables.docx")
        assert [(b.type, b.text.split("\n")[0]) for b in document.blocks] == [
            (BlockType.PARAGRAPH, "Lorem ipsum dolor sit amet, consectetur adipiscing elit."),
            (BlockType.TABLE, "| Text before Text after |"),
            (BlockType.TABLE, "| Table |"),  # nested inside the cell above
            (BlockType.PARAGRAPH, "Donec semper facilisis metus finibus malesuada."),
        ]


class TestDocxFixtures:
    def test_numbering_part(self) -> None:
        document = parse(FIXTURES / "num-having-numbering-part.docx")
        assert [(b.type, b.text) for b in document.blocks] == [
            (BlockType.LIST, "- Paragraph having List Number style.")
        ]
        assert document.author == "Steve Canny"
        assert document.created_at == "2014-02-02T08:34:00+00:00"

    def test_missing_core_properties_are_not_invented(self) -> None:
        # Without docProps/core.xml python-docx reports the title "Word Document" and a modified time of now.
        document = parse(FIXTURES / "doc-no-coreprops.docx")
        assert (document.title, document.author, document.created_at, document.last_modified) == (
            None,
            None,
            None,
            None,
        )
