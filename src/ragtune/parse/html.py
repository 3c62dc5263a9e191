"""HTML parser: the page's main content as headings, paragraphs, lists, code and Markdown tables, without chrome."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragtune.parse.blocks import HeadingPath, build_document, clean_metadata, collapse_whitespace, markdown_table
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
# Readability-style hints in class/id names: site furniture (share bars, related links, comments, menus, tables of
# contents) unless the same name also says it is the content ("article-body", "main-content").
_BOILERPLATE_NAME = re.compile(
    r"comment|disqus|share|sharing|social|related|recommend|promo|sponsor|advert|\bads?\b|-ad-|banner|breadcrumb|"
    r"sidebar|widget|\bfoot|copyright|masthead|menu|navbar|\bnav|newsletter|subscri|signup|cookie|gdpr|popup|modal|"
    r"pagination|pager|toolbar|skip|outbrain|taboola|\btoc\b|rss|shoutbox|skyscraper|yom-remote",
    re.IGNORECASE,
)
_CONTENT_NAME = re.compile(r"article|body|content|entry|main|post|story|text|column", re.IGNORECASE)
# Containers dropped when they are mostly links and sit before the first or after the last paragraph of the
# content: "related stories", "more must-reads", tag lists. Link lists between paragraphs are the text's own.
_LINK_LIST_TAGS = {"ul", "ol", "div", "section", "dl"}
_LINK_DENSITY = 0.5
_LINK_LIST_MIN_LINKS = 3
# Paragraph-like elements whose own (non-link) text is the page's "content mass"; shorter runs are captions,
# buttons and menu labels.
_PARAGRAPH_TAGS = {"p", "pre", "blockquote", "td", "dd"}
_MIN_PARAGRAPH_CHARS = 25
# The content root is the deepest element still holding this share of the content mass, so a page's sections
# are never split apart while the chrome around them (headlines lists, footers) falls away.
_ROOT_MASS_SHARE = 0.75
# An element holding this share of the content mass is never dropped as boilerplate, whatever its name says.
_PROTECTED_MASS_SHARE = 0.4
_META_CREATED = ("article:published_time", "date", "dcterms.created", "dc.date", "pubdate")
_META_MODIFIED = ("article:modified_time", "last-modified", "dcterms.modified")
_CHARSET = re.compile(rb"<meta[^>]+charset", re.IGNORECASE)


def parse_html(data: bytes, source: str) -> Document:
    """Parse an HTML page's main content: ``<main>``, a single ``<article>``, or the densest block of paragraphs.

    Scripts, navigation, hidden elements, furniture named as such (share bars, comments, related links, footers)
    and link lists around the text are dropped first.
    """
    from bs4 import BeautifulSoup

    with warnings.catch_warnings():
        # XHTML saved as .html is read fine by the HTML parser, which keeps every page on one code path.
        from bs4 import XMLParsedAsHTMLWarning

        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(_markup(data, source), "lxml")
    title = clean_metadata(soup.title.get_text()) if soup.title else None
    meta = _meta_tags(soup)
    author = _first(meta, ("author",))
    created = _first(meta, _META_CREATED)
    modified = _first(meta, _META_MODIFIED)

    _strip_chrome(soup)
    _strip_boilerplate(soup)
    layout = _Layout(soup)
    root = _content_root(soup, layout)
    _strip_edge_link_lists(root, layout)
    reader = BlockReader()
    reader.read(root)
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


def _remove_where(root: Tag, drop: Callable[[Tag, bool], bool]) -> None:
    """Decompose every element below ``root`` for which ``drop(tag, inside_article)`` holds, in one walk.

    Dropped elements are not descended into; checking ``Tag.decomposed`` instead would search each subtree.
    """
    from bs4 import Tag

    stack: list[tuple[Tag, bool]] = [(root, root.name == "article")]
    while stack:
        element, inside_article = stack.pop()
        for child in list(element.children):
            if not isinstance(child, Tag):
                continue
            if drop(child, inside_article):
                child.decompose()
            else:
                stack.append((child, inside_article or child.name == "article"))


def _strip_chrome(soup: BeautifulSoup) -> None:
    def chrome(tag: Tag, inside_article: bool) -> bool:
        if tag.name == "br":
            tag.replace_with("\n")
            return False
        return (
            tag.name in _DROPPED
            or tag.get("role") == "navigation"
            or (tag.name in _DROPPED_OUTSIDE_ARTICLE and not inside_article)
        )

    _remove_where(soup, chrome)


def _hidden(tag: Tag) -> bool:
    style = tag.get("style")
    return (
        tag.has_attr("hidden")
        or tag.get("aria-hidden") == "true"
        or (isinstance(style, str) and re.search(r"display\s*:\s*none|visibility\s*:\s*hidden", style) is not None)
    )


def _names(tag: Tag) -> str:
    classes = tag.get("class")
    names = classes if isinstance(classes, list) else [str(classes or "")]
    return " ".join([*names, str(tag.get("id") or "")])


@dataclass
class _Stats:
    """Measures of one element's subtree, from ``_measure``."""

    position: int  # index in document order
    size: int = 0  # elements below it
    chars: int = 0  # text characters, whitespace excluded
    link_chars: int = 0
    links: int = 0
    has_blocks: bool = False  # a block element below it
    paragraph: bool = False
    mass: int = 0  # non-link characters of the paragraphs in it


class _Layout:
    """Text and link measures of every element of a page, computed in two linear passes."""

    def __init__(self, soup: BeautifulSoup) -> None:
        from bs4 import NavigableString

        self.tags = soup.find_all(True)
        self.stats = {id(tag): _Stats(position) for position, tag in enumerate(self.tags)}
        inside_paragraph: dict[int, bool] = {}
        for tag in self.tags:
            parent = tag.parent
            inside_paragraph[id(tag)] = parent is not None and (
                inside_paragraph.get(id(parent), False) or parent.name in _PARAGRAPH_TAGS
            )
        # Reverse document order visits every element after all of its descendants.
        for tag in reversed(self.tags):
            stats = self.stats[id(tag)]
            stats.chars += sum(
                len("".join(child.split())) for child in tag.contents if type(child) is NavigableString
            )
            if tag.name == "a":
                stats.links += 1
                stats.link_chars = stats.chars
            own = stats.chars - stats.link_chars
            leaf = tag.name in _PARAGRAPH_TAGS or (tag.name in ("div", "section") and not stats.has_blocks)
            if leaf and not inside_paragraph[id(tag)] and own >= _MIN_PARAGRAPH_CHARS:
                stats.paragraph, stats.mass = True, own
            parent = tag.parent
            if parent is not None and id(parent) in self.stats:
                up = self.stats[id(parent)]
                up.size += stats.size + 1
                up.chars += stats.chars
                up.link_chars += stats.link_chars
                up.links += stats.links
                up.has_blocks = up.has_blocks or stats.has_blocks or tag.name in _BLOCK_TAGS
                up.mass += stats.mass

    def of(self, tag: Tag) -> _Stats:
        return self.stats[id(tag)]

    def mass(self, tag: Tag) -> int:
        stats = self.stats.get(id(tag))
        return stats.mass if stats else 0


def _strip_boilerplate(soup: BeautifulSoup) -> None:
    """Drop hidden elements and furniture named as such (share bars, comments, related links, footers).

    The page's paragraph text guards the removal: an element holding much of it stays even when its class name
    looks like furniture (``id="layout-with-sidebar"`` wrapping the whole article).
    """
    layout = _Layout(soup)
    page = max(layout.mass(soup.body or soup), 1)

    def boilerplate(tag: Tag, inside_article: bool) -> bool:
        if tag.name in ("html", "body"):
            return False
        if _hidden(tag):
            # Hidden text is never content, however much of it there is: it is where instructions to a model hide.
            return True
        if tag.name in ("main", "article") or layout.mass(tag) >= _PROTECTED_MASS_SHARE * page:
            return False
        names = _names(tag)
        return bool(names.strip()) and _BOILERPLATE_NAME.search(names) is not None and not _CONTENT_NAME.search(names)

    _remove_where(soup, boilerplate)


def _strip_edge_link_lists(root: Tag, layout: _Layout) -> None:
    """Drop link lists that come before the first or after the last content paragraph inside ``root``."""
    if id(root) in layout.stats:
        start = layout.of(root).position
        end = start + layout.of(root).size
    else:  # the document itself (a fragment without <html>/<body>)
        start, end = -1, len(layout.tags) - 1
    positions = [i for i in range(start + 1, end + 1) if layout.stats[id(layout.tags[i])].paragraph]
    if not positions:
        return
    first, last = positions[0], positions[-1]
    skip_until = -1
    for i in range(start + 1, end + 1):
        if i <= skip_until:
            continue  # inside a list removed just now
        tag = layout.tags[i]
        stats = layout.of(tag)
        if (
            tag.name not in _LINK_LIST_TAGS
            or stats.mass
            or first <= i + stats.size and i <= last  # between paragraphs (or around one): part of the text
            or stats.links < _LINK_LIST_MIN_LINKS
            or stats.link_chars <= _LINK_DENSITY * stats.chars
        ):
            continue
        skip_until = i + stats.size
        tag.decompose()


def _prune_around_text(root: Tag, layout: _Layout) -> None:
    """Inside marked-up content, drop the text-less siblings (video playlists, image strips) along the way down to
    the element holding most of the paragraphs; headings stay, so an article's own title is kept."""
    from bs4 import Tag

    total = layout.mass(root)
    node = root
    while total:
        children = [child for child in node.children if isinstance(child, Tag)]
        best = max(children, key=layout.mass, default=None)
        if best is None or layout.mass(best) < _ROOT_MASS_SHARE * total:
            return
        for child in children:
            if child is not best and not layout.mass(child) and not _has_heading(child):
                child.decompose()
        node = best


def _has_heading(tag: Tag) -> bool:
    return tag.name in _HEADINGS or tag.find(list(_HEADINGS)) is not None


def _content_root(soup: BeautifulSoup, layout: _Layout) -> Tag:
    """``<main>``, else a single ``<article>``, else the deepest element holding most of the paragraph text."""
    from bs4 import Tag

    main = soup.find("main")
    articles = soup.find_all("article")
    # Several articles means a listing page, where the body is the content.
    marked = main if main is not None else articles[0] if len(articles) == 1 else None
    if marked is not None:
        _prune_around_text(marked, layout)
        return marked
    root: Tag = soup.body or soup
    total = layout.mass(root)
    if not total:
        return root
    while True:
        children = [child for child in root.children if isinstance(child, Tag)]
        best = max(children, key=layout.mass, default=None)
        if best is None or layout.mass(best) < _ROOT_MASS_SHARE * total:
            return root
        root = best


class BlockReader:
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
