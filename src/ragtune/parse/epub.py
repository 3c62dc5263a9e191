"""EPUB parser: chapters read in spine order through the HTML parser, with title, author and dates from the OPF."""

from __future__ import annotations

import io
import logging
import posixpath
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ragtune.errors import ParseError
from ragtune.parse.blocks import build_document, clean_metadata
from ragtune.parse.safety import check_zip, safe_xml_parser
from ragtune.types import Block, Document

if TYPE_CHECKING:
    from lxml import etree

logger = logging.getLogger(__name__)

_CONTAINER = "META-INF/container.xml"
_ENCRYPTION = "META-INF/encryption.xml"
_NS = {
    "container": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
    "enc": "http://www.w3.org/2001/04/xmlenc#",
}
_CHAPTER_TYPES = {"application/xhtml+xml", "text/html", "application/x-dtbook+xml"}
# Font obfuscation (IDPF, Adobe) is listed in encryption.xml too, but only scrambles fonts, never text.
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
# The HTML parser has no use for a DOCTYPE, and an internal subset (entity declarations, possibly external ones
# pointing at local files) would otherwise leak into the text as "]>".
# Elements without reading text; a spine may also list the EPUB 3 navigation document, whose <nav> is a TOC.
_NOT_TEXT = ["script", "style", "noscript", "template", "svg", "nav", "head"]
_DOCTYPE = re.compile(rb"<!DOCTYPE[^>\[]*(\[.*?\])?\s*>", re.IGNORECASE | re.DOTALL)


@dataclass
class _Package:
    """What the OPF package document says: metadata and the chapters in reading order."""

    title: str | None = None
    authors: list[str] = field(default_factory=list)
    created_at: str | None = None
    last_modified: str | None = None
    chapters: list[str] = field(default_factory=list)  # archive paths, spine order


def parse_epub(data: bytes, source: str) -> Document:
    """Parse an EPUB 2/3 book: each spine chapter's XHTML becomes blocks with ``page_number`` = chapter number."""
    names = check_zip(data, source, kind="EPUB")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        opf_path = _package_path(archive, names, source)
        package = _read_package(archive, opf_path, source)
        _refuse_drm(archive, names, package, source)
        blocks: list[Block] = []
        for number, path in enumerate(package.chapters, start=1):
            if path not in names:
                logger.warning("%s: chapter %s is listed in the spine but missing from the archive", source, path)
                continue
            chapter = _chapter_blocks(archive.read(path))
            blocks.extend(block.model_copy(update={"page_number": number}) for block in chapter)
    return build_document(
        blocks,
        source=source,
        source_type="epub",
        title=package.title,
        author=", ".join(package.authors) or None,
        created_at=package.created_at,
        last_modified=package.last_modified,
    )


def _chapter_blocks(markup: bytes) -> list[Block]:
    """A chapter's blocks through the HTML parser's block reader.

    ``parse_html`` itself is not used: its web-page heuristics (dropping ``<header>``, picking the densest
    element as the content) would cut a chapter's own title and sections. A book has no site chrome, so only
    non-text elements are removed here.
    """
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    from ragtune.parse.html import BlockReader

    with warnings.catch_warnings():
        # Chapters are XHTML; the HTML parser reads them well and, unlike an XML parser, never expands entities.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(_DOCTYPE.sub(b"", markup, count=1), "lxml")
    for tag in soup.find_all(_NOT_TEXT):
        if not tag.decomposed:
            tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")  # a line break separates words that the markup writes with no space between
    reader = BlockReader()
    reader.read(soup.body or soup)
    return reader.blocks


def _xml(archive: zipfile.ZipFile, path: str, source: str) -> etree._Element:
    from lxml import etree

    try:
        return etree.fromstring(archive.read(path), safe_xml_parser())
    except (KeyError, etree.XMLSyntaxError) as exc:
        raise ParseError(
            source, f"not a valid EPUB ({path} is missing or not well-formed XML) — re-export the book"
        ) from exc


def _package_path(archive: zipfile.ZipFile, names: frozenset[str], source: str) -> str:
    """The OPF named by META-INF/container.xml; the only .opf in the archive when the container is missing."""
    if _CONTAINER in names:
        root = _xml(archive, _CONTAINER, source)
        for rootfile in root.iterfind(".//container:rootfile", _NS):
            path = rootfile.get("full-path")
            if path and rootfile.get("media-type", "application/oebps-package+xml") == "application/oebps-package+xml":
                return path
    candidates = sorted(name for name in names if name.lower().endswith(".opf"))
    if len(candidates) == 1:
        return candidates[0]
    raise ParseError(
        source, "not a valid EPUB (no package document found in META-INF/container.xml) — re-export the book"
    )


def _read_package(archive: zipfile.ZipFile, opf_path: str, source: str) -> _Package:
    root = _xml(archive, opf_path, source)
    base = posixpath.dirname(opf_path)
    package = _Package()
    metadata = root.find("opf:metadata", _NS)
    if metadata is not None:
        package.title = _text(metadata.find("dc:title", _NS))
        package.authors = [a for a in (_text(c) for c in metadata.iterfind("dc:creator", _NS)) if a]
        for date in metadata.iterfind("dc:date", _NS):
            # EPUB 2 marks dates with opf:event; EPUB 3 has one dc:date (publication) and a dcterms:modified meta.
            event = date.get(f"{{{_NS['opf']}}}event", "publication")
            if event == "modification":
                package.last_modified = package.last_modified or _text(date)
            else:
                package.created_at = package.created_at or _text(date)
        for meta in metadata.iterfind("opf:meta", _NS):
            if meta.get("property") == "dcterms:modified":
                package.last_modified = _text(meta) or package.last_modified
    manifest: dict[str, tuple[str, str]] = {}
    for item in root.iterfind("opf:manifest/opf:item", _NS):
        item_id, href = item.get("id"), item.get("href")
        if item_id and href:
            path = posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))
            manifest[item_id] = (path, item.get("media-type", ""))
    for itemref in root.iterfind("opf:spine/opf:itemref", _NS):
        path, media_type = manifest.get(itemref.get("idref", ""), ("", ""))
        if path and media_type in _CHAPTER_TYPES:
            package.chapters.append(path)
    if not package.chapters:
        raise ParseError(
            source, "EPUB has no readable chapters (its spine lists no XHTML documents) — re-export the book"
        )
    return package


def _refuse_drm(archive: zipfile.ZipFile, names: frozenset[str], package: _Package, source: str) -> None:
    """Encrypted chapters would parse as noise; say so instead."""
    if _ENCRYPTION not in names:
        return
    root = _xml(archive, _ENCRYPTION, source)
    chapters = set(package.chapters)
    for data in root.iterfind(".//enc:EncryptedData", _NS):
        method = data.find("enc:EncryptionMethod", _NS)
        algorithm = method.get("Algorithm", "") if method is not None else ""
        reference = data.find("enc:CipherData/enc:CipherReference", _NS)
        uri = unquote(reference.get("URI", "")) if reference is not None else ""
        if algorithm not in _FONT_OBFUSCATION and posixpath.normpath(uri) in chapters:
            raise ParseError(source, "EPUB is DRM-protected (its chapters are encrypted) — use a DRM-free copy")


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    return clean_metadata("".join(element.itertext()))
