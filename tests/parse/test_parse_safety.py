"""Tests for hostile container input: zip bombs and forged archives rejected, XML external entities never expanded."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse.docx import parse_docx
from ragtune.parse.options import ParseOptions, parse_options
from ragtune.parse.pptx import parse_pptx
from ragtune.parse.safety import check_zip, safe_xml_parser
from ragtune.parse.spreadsheet import parse_xlsx

pytestmark = pytest.mark.unit

_CENTRAL_HEADER = b"PK\x01\x02"
_LOCAL_HEADER = b"PK\x03\x04"


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def rewrite_member(data: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    """A copy of the zip with one member's content replaced by ``change(content)``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            target.writestr(info.filename, change(content) if info.filename == name else content)
    return buffer.getvalue()


def patch_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("Hello PLACEHOLDER world")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.append(["Name", "Value"])
    workbook.active.append(["PLACEHOLDER", 1])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def pptx_bytes() -> bytes:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = "Hello PLACEHOLDER"
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


class TestZipLimits:
    def test_high_ratio_member_rejected(self) -> None:
        bomb = zip_bytes({"[Content_Types].xml": b"<Types/>", "xl/worksheets/sheet1.xml": bytes(8 * 1024 * 1024)})
        with pytest.raises(
            ParseError,
            match=r"bomb.xlsx: XLSX member 'xl/worksheets/sheet1.xml' has a compression "
            r"ratio of \d+:1, more than max_archive_ratio=200 .*raise max_archive_ratio",
        ):
            parse_xlsx(bomb, "bomb.xlsx")

    def test_member_size_limit(self) -> None:
        with (
            parse_options(ParseOptions(max_archive_member_bytes=2000)),
            pytest.raises(
                ParseError,
                match=r"XLSX member '[^']+' would decompress to \d+ bytes, more than "
                r"max_archive_member_bytes=2000",
            ),
        ):
            parse_xlsx(xlsx_bytes(), "book.xlsx")

    def test_total_size_limit(self) -> None:
        data = docx_bytes()
        total = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
        with (
            parse_options(ParseOptions(max_archive_total_bytes=total - 1)),
            pytest.raises(ParseError, match=f"max_archive_total_bytes={total - 1}"),
        ):
            parse_docx(data, "letter.docx")
        with parse_options(ParseOptions(max_archive_total_bytes=total)):
            assert "Hello PLACEHOLDER world" in parse_docx(data, "letter.docx").text

    def test_member_count_limit(self) -> None:
        with (
            parse_options(ParseOptions(max_archive_members=3)),
            pytest.raises(ParseError, match=r"PPTX holds \d+ files, more than max_archive_members=3"),
        ):
            parse_pptx(pptx_bytes(), "deck.pptx")

    def test_member_larger_than_declared(self) -> None:
        data = zip_bytes({"word/document.xml": b"<w:document>" + b"A" * 20_000 + b"</w:document>"})
        central = data.index(_CENTRAL_HEADER)
        # Declare 100 bytes in both headers; Python's reader would silently stop there, a naive one would not.
        forged = patch_u32(patch_u32(data, central + 24, 100), data.index(_LOCAL_HEADER) + 22, 100)
        assert zipfile.ZipFile(io.BytesIO(forged)).infolist()[0].file_size == 100
        with pytest.raises(ParseError, match=r"'word/document.xml' decompresses to more than its declared 100 bytes"):
            check_zip(forged, "forged.docx", kind="DOCX")

    def test_corrupt_member(self) -> None:
        data = zip_bytes({"content.xml": b"<doc>" + b"some text " * 500 + b"</doc>"})
        start = data.index(b"content.xml") + len("content.xml")
        broken = data[:start] + bytes(b ^ 0xFF for b in data[start : start + 40]) + data[start + 40 :]
        with pytest.raises(ParseError, match="member 'content.xml' is corrupt"):
            check_zip(broken, "broken.epub", kind="EPUB")

    def test_wrong_checksum_and_short_member(self) -> None:
        data = zip_bytes({"word/document.xml": b"<w:document>" + b"B" * 5000 + b"</w:document>"})
        central = data.index(_CENTRAL_HEADER)
        with pytest.raises(ParseError, match=r"'word/document.xml' is corrupt \(CRC check failed\)"):
            check_zip(patch_u32(data, central + 16, 0x12345678), "crc.docx", kind="DOCX")
        with pytest.raises(ParseError, match=r"'word/document.xml' is corrupt \(5025 of 9000 bytes present\)"):
            check_zip(patch_u32(data, central + 24, 9000), "short.docx", kind="DOCX")

    def test_encrypted_member(self) -> None:
        data = zip_bytes({"word/document.xml": b"<w:document/>"})
        central = data.index(_CENTRAL_HEADER)
        flagged = data[: central + 8] + struct.pack("<H", 1) + data[central + 10 :]
        with pytest.raises(ParseError, match="member 'word/document.xml' is encrypted — remove the password"):
            check_zip(flagged, "locked.docx", kind="DOCX")

    def test_not_a_zip(self) -> None:
        with pytest.raises(ParseError, match="x.epub: not a valid EPUB"):
            check_zip(b"%PDF-1.7 not a zip", "x.epub", kind="EPUB")

    def test_normal_archive_passes_and_lists_members(self) -> None:
        names = check_zip(zip_bytes({"a.txt": b"hello", "dir/b.txt": bytes(5000)}, zipfile.ZIP_STORED), "ok.zip")
        assert names == {"a.txt", "dir/b.txt"}


@pytest.fixture
def secret(tmp_path: Path) -> tuple[str, str]:
    """(entity URI, secret text): a local file an XXE payload would try to pull into the parsed text."""
    path = tmp_path / "secret.txt"
    text = "TOPSECRET-7f3a9c"
    path.write_text(text)
    return path.as_uri(), text


def with_external_entity(content: bytes, root: bytes, uri: str, marker: bytes = b"PLACEHOLDER") -> bytes:
    """The XML with a DOCTYPE declaring ``&xxe;`` as ``uri``, and ``marker`` replaced by a reference to it."""
    declaration = b"<!DOCTYPE " + root + b' [<!ENTITY xxe SYSTEM "' + uri.encode() + b'">]>'
    assert marker in content
    body = content.replace(marker, b"&xxe;")
    if body.startswith(b"<?xml"):
        head, _, rest = body.partition(b"?>")
        return head + b"?>" + declaration + rest
    return declaration + body


def parsed_text_or_error(parser: Callable[[bytes, str], object], data: bytes, name: str) -> str:
    try:
        return parser(data, name).text  # type: ignore[attr-defined, no-any-return]
    except ParseError as exc:
        return str(exc)


class TestExternalEntities:
    def test_docx(self, secret: tuple[str, str]) -> None:
        uri, text = secret
        data = rewrite_member(docx_bytes(), "word/document.xml", lambda c: with_external_entity(c, b"w:document", uri))
        result = parsed_text_or_error(parse_docx, data, "xxe.docx")
        assert text not in result
        # python-docx keeps the entity as an unexpanded node; the run's text before it survives.
        assert "Hello" in result

    def test_xlsx_shared_strings(self, secret: tuple[str, str]) -> None:
        uri, text = secret
        # openpyxl writes inline strings, so a workbook saved by Excel (an xlsx2csv fixture) supplies the part.
        original = (Path(__file__).parents[1] / "fixtures" / "office" / "last-column-empty.xlsx").read_bytes()
        data = rewrite_member(
            original, "xl/sharedStrings.xml", lambda c: with_external_entity(c, b"sst", uri, b"even more things")
        )
        result = parsed_text_or_error(parse_xlsx, data, "xxe.xlsx")
        assert text not in result
        # openpyxl reads strings through defusedxml, which refuses any entity declaration: a clear ParseError.
        assert result.startswith("xxe.xlsx: not a valid XLSX")

    def test_xlsx_sheet(self, secret: tuple[str, str]) -> None:
        uri, text = secret

        def inline(content: bytes) -> bytes:
            # An inline string cell holding the entity, so the worksheet reader itself meets it.
            cell = b'<c r="C1" t="inlineStr"><is><t>PLACEHOLDER</t></is></c>'
            return with_external_entity(content.replace(b"</row>", cell + b"</row>", 1), b"worksheet", uri)

        data = rewrite_member(xlsx_bytes(), "xl/worksheets/sheet1.xml", inline)
        result = parsed_text_or_error(parse_xlsx, data, "xxe.xlsx")
        assert text not in result
        assert result.startswith("xxe.xlsx: not a valid XLSX")  # defusedxml refuses the entity declaration

    def test_pptx(self, secret: tuple[str, str]) -> None:
        uri, text = secret
        data = rewrite_member(pptx_bytes(), "ppt/slides/slide1.xml", lambda c: with_external_entity(c, b"p:sld", uri))
        result = parsed_text_or_error(parse_pptx, data, "xxe.pptx")
        assert text not in result
        assert "Hello" in result

    def test_safe_xml_parser(self, secret: tuple[str, str]) -> None:
        from lxml import etree

        uri, text = secret
        xml = (
            f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "{uri}"><!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&xxe; &b;</r>'
        ).encode()
        root = etree.fromstring(xml, safe_xml_parser())
        serialised = etree.tostring(root).decode()
        assert text not in serialised
        assert "aaaaaaaaaa" not in serialised  # internal entities stay references too (no billion laughs)
