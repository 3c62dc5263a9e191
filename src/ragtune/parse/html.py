"""HTML parser: the page's main content as headings, paragraphs, lists, code and Markdown tables, without chrome."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ragtune.parse.base import HeadingPath, build_document, clean_metadata, collapse_whitespace, markdown_table
from ragtune.types import Block, BlockType, Document

if TYPE_CHECKING:
    from bs4 import BeautifulSoup, Tag

# Site chrome and non-content elements; their text would pollute every chunk of the page.
_DROPPED = {"script", "style", "noscript", "template", "nav", "aside", "form", "iframe", "svg", "canvas", "button"}
# A site's header/footer is chrome, but an article's own <header> holds its title, so those are kept.
_DROPPED_OUTSIDE_ARTICLE = {"header", "footer"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# Elements that start a new block; everything else is inline and joins the surrounding paragraph.
_BLOCK_TAGS = {
    "address",
    "article",
    "blockquote",
    "body",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "header",
    "hgroup",
    "hr",
    "li",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
    *_HEADINGS,
}
_META_CREATED = ("article:published_time", "date", "dcterms.created", "dc.date", "pubdate")
_META_MODIFIED = ("article:modified_time", "last-modified", "dcterms.modified")
_CHARSET = re.compile(rb"<meta[^>]+charset", re.IGNORECASE)


def parse_html(data: bytes, source: str) -> Document:
    """Parse an HTML page, preferring ``<main>`` or a single ``<article>`` and dropping navigation and scripts."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_markup(data, source), "lxml")
    title = clean_metadata(soup.title.get_text()) if soup.title else None
    meta = _meta_tags(soup)
    author = _first(meta, ("author",))
    created = _first(meta, _META_CREATED)
    modified = _first(meta, _META_MODIFIED)

    _strip_chrome(soup)
    reader = _BlockReader()
    reader.read(_content_root(soup))
    return build_document(
        reader.blocks,
        source=source,
        source_type="html",
        title=collapse_whitespace(title) if title else None,
        author=author,
        created_at=created,
        last_modified=modified,
    )


def _markup(data: bytes, source: str) -> str | bytes:
    """Decoded text when the bytes are UTF-8, else the bytes, so BeautifulSoup honours a declared charset.

    Without a declaration, non-UTF-8 bytes go through ragtune's own detection, which reads GBK reliably.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if _CHARSET.search(data[:4096]):
        return data
    from ragtune.parse.text import decode_text

    return decode_text(data, source)


def _meta_tags(soup: BeautifulSoup) -> dict[str, str]:
    """``<meta>`` contents by lower-cased ``name`` or ``property``; the first occurrence wins."""
    found: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        key = tag.get("name") or tag.get("property")
        value = clean_metadata(tag.get("content"))
        if isinstance(key, str) and value:
            found.setdefault(key.strip().lower(), value)
    return found


def _first(meta: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((meta[name] for name in names if name in meta), None)


def _strip_chrome(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(True):
        if tag.decomposed:  # inside chrome removed earlier in this walk
            continue
        name = tag.name
        if (
            name in _DROPPED
            or tag.get("role") == "navigation"
            or (name in _DROPPED_OUTSIDE_ARTICLE and tag.find_parent("article") is None)
        ):
            tag.decompose()
        elif name == "br":
            tag.replace_with("\n")


def _content_root(soup: BeautifulSoup) -> Tag:
    main = soup.find("main")
    if main is not None:
        return main
    articles = soup.find_all("article")
    # Several articles means a listing page, where the body is the content.
    if len(articles) == 1:
        return articles[0]
    return soup.body or soup


class _BlockReader:
    """Walks the element tree in document order, gathering inline text into paragraphs between block elements."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._headings = HeadingPath()
        self._inline: list[str] = []

    def read(self, element: Tag) -> None:
        self._read_children(element)
        self._flush()

    def _add(self, block_type: BlockType, text: str, *, caption: str | None = None) -> None:
        self.blocks.append(Block(type=block_type, text=text, heading_path=self._headings.path, caption=caption))

    def _flush(self) -> None:
        text = collapse_whitespace("".join(self._inline))
        self._inline.clear()
        if text:
            self._add(BlockType.PARAGRAPH, text)

    def _read_children(self, element: Tag) -> None:
        from bs4 import NavigableString, Tag

        for child in element.children:
            if isinstance(child, Tag):
                self._read_element(child)
            elif type(child) is NavigableString:  # subclasses are comments, doctypes, CDATA: not content
                self._inline.append(str(child))

    def _read_element(self, element: Tag) -> None:
        name = element.name
        if name not in _BLOCK_TAGS and not _contains_blocks(element):
            self._inline.append(element.get_text())
            return
        self._flush()
        if name in _HEADINGS:
            text = collapse_whitespace(element.get_text())
            if text:
                level = _HEADINGS[name]
                self.blocks.append(
                    Block(
                        type=BlockType.HEADING, text=text, level=level, heading_path=self._headings.enter(level, text)
                    )
                )
        elif name in ("ul", "ol"):
            self._add(BlockType.LIST, "\n".join(_list_lines(element, 0)))
        elif name == "pre":
            self._add(BlockType.CODE, element.get_text().strip("\n"))
        elif name == "table":
            caption_tag = element.find("caption")
            caption = collapse_whitespace(caption_tag.get_text()) if caption_tag else None
            self._add(BlockType.TABLE, markdown_table(_table_rows(element)), caption=caption or None)
        else:
            self._read_children(element)
            self._flush()


def _contains_blocks(element: Tag) -> bool:
    # A plain walk: bs4's find() costs far more per call, and this runs for every inline element.
    return any(getattr(node, "name", None) in _BLOCK_TAGS for node in element.descendants)


def _list_lines(element: Tag, depth: int) -> list[str]:
    """One ``- item`` line per list item, nested lists indented under their item."""
    from bs4 import Tag

    lines: list[str] = []
    for item in element.children:
        if not isinstance(item, Tag) or item.name != "li":
            continue
        nested = _sublists(item)
        for sublist in nested:
            sublist.extract()
        text = collapse_whitespace(item.get_text())
        if text:
            lines.append("  " * depth + "- " + text)
        for sublist in nested:
            lines.extend(_list_lines(sublist, depth + 1))
    return lines


def _sublists(element: Tag) -> list[Tag]:
    """The lists inside an item that are not inside a deeper list (those belong to the sub-items)."""
    from bs4 import Tag

    found: list[Tag] = []
    for child in element.children:
        if not isinstance(child, Tag):
            continue
        if child.name in ("ul", "ol"):
            found.append(child)
        else:
            found.extend(_sublists(child))
    return found


def _table_rows(table: Tag) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:  # rows of a nested table belong to its cell's text
            continue
        cells: list[str] = []
        for cell in row.find_all(["th", "td"], recursive=False):
            cells.append(cell.get_text(" "))
            span = cell.get("colspan")
            if isinstance(span, str) and span.isdigit():
                # Spanned columns get empty cells so the columns below stay aligned.
                cells.extend([""] * (min(int(span), 100) - 1))
        if cells:
            rows.append(cells)
    return rows
