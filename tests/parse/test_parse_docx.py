"""Tests for the Word parser: styles, lists, tables in order, core properties and damaged files."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import pytest

from ragtune.errors import ParseError
from ragtune.parse import parse
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
