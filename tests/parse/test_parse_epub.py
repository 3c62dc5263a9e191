"""Tests for the EPUB parser: spine order, chapter blocks via the HTML parser, OPF metadata, DRM and XXE."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse.epub import parse_epub
from ragtune.parse.spreadsheet import table_cells
from ragtune.types import BlockType, Document

pytestmark = pytest.mark.unit

CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>"""

OPF3 = """<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="uid">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="uid">urn:uuid:0b6c3c1e-1111-4a4a-9c9c-123456789abc</dc:identifier>
    <dc:title>{title}</dc:title>
    <dc:creator>Jane Doe</dc:creator>
    <dc:creator>王小明</dc:creator>
    <dc:language>en</dc:language>
    <dc:date>2021-06-01</dc:date>
    <meta property="dcterms:modified">2023-02-03T04:05:06Z</meta>
  </metadata>
  <manifest>
    <item id="ch2" href="Text/chapter%202.xhtml" media-type="application/xhtml+xml"/>
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    <item id="ch1" href="Text/chapter1.xhtml" media-type="application/xhtml+xml"/>
    <item id="css" href="style.css" media-type="text/css"/>
  </manifest>
  <spine>
    <itemref idref="ch1"/>
    <itemref idref="ch2"/>
  </spine>
</package>"""

CHAPTER1 = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title/><link rel="stylesheet" href="../style.css"/></head>
<body>
  <section epub:type="chapter">
    <h1>Chapter 1: Getting Started</h1>
    <p>Install the tool with <code>pip</code>.<br/>Then run it.</p>
    <h2>Requirements</h2>
    <ul><li>Python 3.11</li><li>Two cores<ul><li>more is better</li></ul></li></ul>
    <table><caption>Supported systems</caption>
      <tr><th>OS</th><th>Status</th></tr>
      <tr><td>Linux</td><td>tested</td></tr>
    </table>
    <pre>ragtune ingest docs/</pre>
  </section>
</body>
</html>"""

CHAPTER2 = """<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml">
<head><title>第二章</title></head>
<body>
  <section><header><h1>第二章 配置</h1></header>
  <p>配置文件位于项目根目录。</p></section>
</body>
</html>"""

NAV = """<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<body><nav epub:type="toc"><ol><li><a href="Text/chapter1.xhtml">Chapter 1</a></li></ol></nav></body>
</html>"""


def make_epub(files: dict[str, str | bytes], *, container: bool = True) -> bytes:
    """An EPUB: ``mimetype`` first and stored (as the OCF spec requires), then the container and ``files``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        if container:
            archive.writestr("META-INF/container.xml", CONTAINER)
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def book_files(title: str = "The ragtune Handbook") -> dict[str, str | bytes]:
    return {
        "OEBPS/content.opf": OPF3.format(title=title),
        "OEBPS/nav.xhtml": NAV,
        "OEBPS/Text/chapter1.xhtml": CHAPTER1,
        "OEBPS/Text/chapter 2.xhtml": CHAPTER2,
        "OEBPS/style.css": "body { font-family: serif; }",
    }


def assert_offsets(document: Document) -> None:
    for block in document.blocks:
        assert document.text[block.start : block.end] == block.text


class TestParseEpub:
    def test_chapters_in_spine_order(self) -> None:
        document = parse_epub(make_epub(book_files()), "handbook.epub")
        assert document.source_type == "epub"
        assert [(b.page_number, b.type, b.text.split("\n")[0]) for b in document.blocks] == [
            (1, BlockType.HEADING, "Chapter 1: Getting Started"),
            (1, BlockType.PARAGRAPH, "Install the tool with pip. Then run it."),
            (1, BlockType.HEADING, "Requirements"),
            (1, BlockType.LIST, "- Python 3.11"),
            (1, BlockType.TABLE, "| OS | Status |"),
            (1, BlockType.CODE, "ragtune ingest docs/"),
            (2, BlockType.HEADING, "第二章 配置"),
            (2, BlockType.PARAGRAPH, "配置文件位于项目根目录。"),
        ]
        assert_offsets(document)

    def test_structure_within_chapters(self) -> None:
        document = parse_epub(make_epub(book_files()), "handbook.epub")
        by_text = {b.text.split("\n")[0]: b for b in document.blocks}
        assert by_text["Requirements"].heading_path == ["Chapter 1: Getting Started", "Requirements"]
        assert by_text["- Python 3.11"].text == "- Python 3.11\n- Two cores\n  - more is better"
        table = by_text["| OS | Status |"]
        assert table.caption == "Supported systems"
        assert table_cells(table.text) == [["OS", "Status"], ["Linux", "tested"]]
        # Chapters are separate files: the second starts its own heading path (its title sits in a <header>,
        # which a web page's chrome filter would drop).
        assert by_text["配置文件位于项目根目录。"].heading_path == ["第二章 配置"]

    def test_metadata(self) -> None:
        document = parse_epub(make_epub(book_files()), "handbook.epub")
        assert document.title == "The ragtune Handbook"
        assert document.author == "Jane Doe, 王小明"
        assert document.created_at == "2021-06-01"
        assert document.last_modified == "2023-02-03T04:05:06Z"
        assert document.language == "en"

    def test_epub2_without_container(self) -> None:
        opf = """<?xml version="1.0"?>
<package xmlns="http://www.idpf.org/2007/opf" xmlns:opf="http://www.idpf.org/2007/opf" version="2.0">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:title>Old Book</dc:title>
    <dc:date opf:event="modification">2010-05-06</dc:date>
    <dc:date opf:event="publication">1999</dc:date>
  </metadata>
  <manifest><item id="c" href="c.html" media-type="application/xhtml+xml"/></manifest>
  <spine toc="ncx"><itemref idref="c"/></spine>
</package>"""
        chapter = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>c</title></head>
<body><h2>Preface</h2><p>Fifty&nbsp;years &amp; more.</p></body></html>"""
        document = parse_epub(make_epub({"book.opf": opf, "c.html": chapter}, container=False), "old.epub")
        assert [(b.type, b.text) for b in document.blocks] == [
            (BlockType.HEADING, "Preface"),
            (BlockType.PARAGRAPH, "Fifty years & more."),  # &nbsp; resolved without the DTD, then collapsed
        ]
        assert (document.title, document.created_at, document.last_modified) == ("Old Book", "1999", "2010-05-06")

    def test_missing_chapter_is_skipped(self, caplog: pytest.LogCaptureFixture) -> None:
        files = book_files()
        del files["OEBPS/Text/chapter1.xhtml"]
        document = parse_epub(make_epub(files), "partial.epub")
        assert {b.page_number for b in document.blocks} == {2}
        assert "OEBPS/Text/chapter1.xhtml is listed in the spine but missing" in caplog.text

    def test_drm_refused(self) -> None:
        encryption = """<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
            xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
          <enc:EncryptedData>
            <enc:EncryptionMethod Algorithm="{algorithm}"/>
            <enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>
          </enc:EncryptedData>
        </encryption>"""
        files = book_files()
        files["META-INF/encryption.xml"] = encryption.format(
            algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc", uri="OEBPS/Text/chapter%202.xhtml"
        )
        with pytest.raises(ParseError, match="locked.epub: EPUB is DRM-protected"):
            parse_epub(make_epub(files), "locked.epub")
        # Obfuscated fonts are listed the same way but leave the text readable.
        files["META-INF/encryption.xml"] = encryption.format(
            algorithm="http://www.idpf.org/2008/embedding", uri="OEBPS/fonts/serif.otf"
        )
        assert parse_epub(make_epub(files), "fonts.epub").blocks

    def test_not_an_epub(self) -> None:
        with pytest.raises(ParseError, match="notes.epub: not a valid EPUB"):
            parse_epub(b"plain text", "notes.epub")
        with pytest.raises(ParseError, match="empty.epub: not a valid EPUB .*no package document"):
            parse_epub(make_epub({"readme.txt": "hi"}, container=False), "empty.epub")
        files = book_files()
        files["OEBPS/content.opf"] = "<package><metadata>"
        with pytest.raises(ParseError, match="broken.epub: not a valid EPUB .*OEBPS/content.opf"):
            parse_epub(make_epub(files), "broken.epub")

    def test_external_entities_never_expanded(self, tmp_path: Path) -> None:
        secret = tmp_path / "secret.txt"
        secret.write_text("TOPSECRET-epub-51b2")
        doctype = f'<!DOCTYPE html [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
        files = book_files(title="Leak &xxe; here")
        files["OEBPS/content.opf"] = str(files["OEBPS/content.opf"]).replace(
            "<package", f'<!DOCTYPE package [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n<package', 1
        )
        files["OEBPS/Text/chapter 2.xhtml"] = CHAPTER2.replace("<html", doctype + "\n<html", 1).replace(
            "项目根目录", "&xxe;"
        )
        document = parse_epub(make_epub(files), "xxe.epub")
        assert "TOPSECRET" not in document.text
        assert "TOPSECRET" not in (document.title or "")
        assert "]>" not in document.text  # the DOCTYPE's internal subset does not leak into the text
        assert document.blocks[-1].text.startswith("配置文件位于")
