"""Tests for the plain-text parser: encodings, newlines and paragraphs."""

from __future__ import annotations

import codecs

import pytest

from ragtune.errors import ParseError
from ragtune.parse import decode_text, parse, parse_text
from ragtune.types import BlockType

pytestmark = pytest.mark.unit

CHINESE = (
    "第一章 总则\n\n本办法适用于公司全体员工。员工应当遵守劳动纪律，按时上下班。\n\n"
    "第二章 考勤\n\n迟到三次按旷工半天处理。"
)

# Passages of news articles (newspaper4k's test data, see tests/fixtures/html/SOURCES.md), simplified and traditional.
PARAGRAPH_HANS = (
    "新华社北京11月17日电 记者17日从国家卫生健康委获悉，近阶段，相关部门持续依托短缺药品供应保障工作会商联动机制，"
    "深入优化短缺药品实时监测预警与分级应对体系，全力保障人民群众临床用药需求。\n\n"
    "据了解，短缺药品信息监测共享正在多维度推进。国家药监局持续采集短缺药品生产供应及停产报告信息。"
)
PARAGRAPH_HANT = (
    "香港行政長官梁振英在各方壓力下就其大宅的違章建築問題到立法會接受質詢，並向香港民眾道歉。"
    "梁振英此前承認早在去年參選行政長官之前就已知悉其住宅的違建問題，引發誠信危機。"
)


class TestParseText:
    def test_paragraphs(self, write_file, check_offsets) -> None:
        path = write_file("notes.txt", "First line\nsame paragraph.\n\n\n  Second paragraph.  \n \nThird.\n")
        document = parse(path)
        assert document.source_type == "txt"
        assert [b.text for b in document.blocks] == ["First line\nsame paragraph.", "Second paragraph.", "Third."]
        assert all(b.type is BlockType.PARAGRAPH for b in document.blocks)
        assert all(b.page_number is None and b.heading_path == [] for b in document.blocks)
        assert document.language == "en"
        assert document.title is None
        check_offsets(document)

    def test_newlines_normalised(self, check_offsets) -> None:
        document = parse(b"a\r\nb\r\n\r\nc\rd\r\re", filename="mixed.txt")
        assert [b.text for b in document.blocks] == ["a\nb", "c\nd", "e"]
        assert "\r" not in document.text
        check_offsets(document)

    def test_form_feed_separates_paragraphs(self) -> None:
        assert [b.text for b in parse(b"page one\fpage two", filename="a.txt").blocks] == ["page one", "page two"]

    def test_utf8_chinese(self, write_file, check_offsets) -> None:
        document = parse(write_file("规章.txt", CHINESE))
        assert document.blocks[0].text == "第一章 总则"
        assert "迟到三次" in document.text
        assert document.language == "zh"
        check_offsets(document)

    @pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
    def test_legacy_chinese_encodings(self, write_file, encoding: str, check_offsets) -> None:
        document = parse(write_file("gbk.txt", CHINESE.encode(encoding)))
        assert document.text == CHINESE
        assert document.language == "zh"
        check_offsets(document)

    @pytest.mark.parametrize("text", ["你好，世界", "你好", "员工手册"])
    def test_short_gbk_text(self, text: str) -> None:
        assert parse(text.encode("gbk"), filename="short.txt").text == text

    @pytest.mark.parametrize(
        ("bom", "encoding"),
        [
            (b"", "utf-8-sig"),
            (b"", "utf-16"),
            (codecs.BOM_UTF16_BE, "utf-16-be"),
            (b"", "utf-32"),
        ],
    )
    def test_byte_order_marks(self, bom: bytes, encoding: str) -> None:
        text = "Héllo 世界\n\nSecond"
        document = parse(bom + text.encode(encoding), filename="bom.txt")
        assert document.text == text
        assert not document.text.startswith("\ufeff")

    def test_gbk_news_paragraph(self, check_offsets) -> None:
        # Real GBK bytes: the way Windows editors in mainland China save a text file by default.
        data = PARAGRAPH_HANS.encode("gbk")
        assert data.decode("utf-8", errors="replace") != PARAGRAPH_HANS  # really not UTF-8
        document = parse(data, filename="news.txt")
        assert document.text == PARAGRAPH_HANS
        assert [b.text for b in document.blocks] == PARAGRAPH_HANS.split("\n\n")
        check_offsets(document)

    def test_big5_traditional_chinese(self) -> None:
        data = PARAGRAPH_HANT.encode("big5")
        assert parse(data, filename="hk.txt").text == PARAGRAPH_HANT

    @pytest.mark.parametrize(
        ("bom", "encoding"), [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]
    )
    def test_utf16_with_bom_chinese(self, bom: bytes, encoding: str) -> None:
        # What Windows Notepad writes as "Unicode" / "Unicode big endian".
        data = bom + PARAGRAPH_HANS.replace("\n", "\r\n").encode(encoding)
        assert parse(data, filename="notepad.txt").text == PARAGRAPH_HANS

    def test_latin1(self) -> None:
        text = "Le café est très chaud. Les élèves étudient à l'école près de la forêt. " * 3
        assert parse(text.encode("latin-1"), filename="fr.txt").text == text.strip()

    def test_empty_file(self) -> None:
        document = parse(b"", filename="empty.txt")
        assert document.text == ""
        assert document.blocks == []
        assert document.language is None

    def test_whitespace_only_file(self) -> None:
        assert parse(b"  \n\n \t\n", filename="blank.txt").blocks == []

    def test_binary_raises(self) -> None:
        with pytest.raises(ParseError, match="image.txt: .*encoding"):
            parse(bytes(range(256)) * 4, filename="image.txt")

    def test_bad_bom_raises(self) -> None:
        with pytest.raises(ParseError, match="bad.txt: .*UTF-8"):
            parse_text(codecs.BOM_UTF8 + b"\xff\xfe\xfa", "bad.txt")

    def test_decode_text_direct(self) -> None:
        assert decode_text("x\r\ny".encode("gbk"), "a.txt") == "x\ny"
