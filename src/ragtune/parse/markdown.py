"""Markdown parser: headings, fenced code, pipe tables, lists and paragraphs as typed blocks, plus front matter."""

from __future__ import annotations

import re

from ragtune.parse.blocks import HeadingPath, build_document, clean_metadata
from ragtune.parse.text import decode_text
from ragtune.types import Block, BlockType, Document

# Line patterns follow CommonMark/GFM closely enough for documents people actually write; inline markup is kept.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_NESTED_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")  # a fence inside a list item may be indented further
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_LIST_ITEM = re.compile(r"^[ \t]{0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$)")
_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_INDENTED_CODE = re.compile(r"^(?: {4}|\t)")
_INDENTED = re.compile(r"^[ \t]+\S")
_FRONT_MATTER_FIELD = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:[ \t]*(.*)$")


def parse_markdown(data: bytes, source: str) -> Document:
    """Parse Markdown into HEADING, PARAGRAPH, CODE, TABLE and LIST blocks with heading paths.

    YAML front matter is dropped from the text; its ``title``, ``author`` and ``date`` fill the document's fields
    and its other scalar fields land in ``metadata["front_matter"]``.
    """
    text = decode_text(data, source)
    front_matter, body = _split_front_matter(text)
    blocks = _read_blocks(body.split("\n"))
    return build_document(
        blocks,
        source=source,
        source_type="md",
        title=clean_metadata(front_matter.get("title")),
        author=clean_metadata(front_matter.get("author")),
        created_at=clean_metadata(front_matter.get("date")),
        last_modified=clean_metadata(front_matter.get("lastmod") or front_matter.get("updated")),
        metadata={"front_matter": front_matter} if front_matter else {},
    )


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Top-level ``key: value`` pairs of a leading ``---`` block, and the text after it.

    Only flat scalars are read: they are all ragtune uses, and it spares a YAML dependency.
    """
    if not text.startswith("---\n"):
        return {}, text
    lines = text.split("\n")
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        return {}, text
    fields: dict[str, str] = {}
    for line in lines[1:end]:
        match = _FRONT_MATTER_FIELD.match(line)
        if match and match.group(2).strip():
            fields[match.group(1).lower()] = _unquote(match.group(2).strip())
    return fields, "\n".join(lines[end + 1 :])


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _read_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    headings = HeadingPath()
    paragraph: list[str] = []

    def add(block_type: BlockType, text: str) -> None:
        blocks.append(Block(type=block_type, text=text, heading_path=headings.path))

    def flush_paragraph() -> None:
        if paragraph:
            add(BlockType.PARAGRAPH, "\n".join(paragraph))
            paragraph.clear()

    def add_heading(level: int, text: str) -> None:
        if text:
            blocks.append(
                Block(type=BlockType.HEADING, text=text, level=level, heading_path=headings.enter(level, text))
            )

    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            flush_paragraph()
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            flush_paragraph()
            end = _fence_end(lines, i, fence.group(1))
            add(BlockType.CODE, "\n".join(lines[i:end]))
            i = end
            continue
        atx = _ATX.match(line)
        if atx:
            flush_paragraph()
            add_heading(len(atx.group(1)), (atx.group(2) or "").strip())
            i += 1
            continue
        if paragraph and _SETEXT.match(line):
            text = " ".join(part.strip() for part in paragraph)
            paragraph.clear()
            add_heading(1 if "=" in line else 2, text)
            i += 1
            continue
        if _THEMATIC.match(line):
            flush_paragraph()
            i += 1
            continue
        if _is_table_start(lines, i):
            flush_paragraph()
            end = i + 2
            while end < n and lines[end].strip() and "|" in lines[end]:
                end += 1
            add(BlockType.TABLE, "\n".join(lines[i:end]))
            i = end
            continue
        if _LIST_ITEM.match(line):
            flush_paragraph()
            end = _list_end(lines, i)
            add(BlockType.LIST, "\n".join(lines[i:end]))
            i = end
            continue
        if not paragraph and _INDENTED_CODE.match(line):
            end = _indented_code_end(lines, i)
            add(BlockType.CODE, "\n".join(_dedent(part) for part in lines[i:end]))
            i = end
            continue
        paragraph.append(line)
        i += 1
    flush_paragraph()
    return blocks


def _fence_end(lines: list[str], start: int, opener: str) -> int:
    """Index just past the closing fence; an unclosed fence runs to the end of the document, as in CommonMark."""
    closer = re.compile(rf"^[ \t]*{re.escape(opener[0])}{{{len(opener)},}}[ \t]*$")
    for j in range(start + 1, len(lines)):
        if closer.match(lines[j]):
            return j + 1
    return len(lines)


def _is_table_start(lines: list[str], i: int) -> bool:
    return (
        "|" in lines[i]
        and i + 1 < len(lines)
        and "|" in lines[i + 1]
        and _TABLE_DELIMITER.match(lines[i + 1]) is not None
    )


def _starts_other_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(_ATX.match(line) or _FENCE.match(line) or _THEMATIC.match(line) or _is_table_start(lines, i))


def _list_end(lines: list[str], start: int) -> int:
    """Index just past a list: its items, their indented continuations (code included) and lazy lines."""
    n = len(lines)
    j = start + 1
    while j < n:
        line = lines[j]
        if not line.strip():
            k = j
            while k < n and not lines[k].strip():
                k += 1
            # A blank line only continues the list when more of it (an item or indented content) follows.
            if k < n and (_LIST_ITEM.match(lines[k]) or _INDENTED.match(lines[k])) and not _THEMATIC.match(lines[k]):
                j = k
                continue
            return j
        if _THEMATIC.match(line):
            return j
        fence = _NESTED_FENCE.match(line)
        if fence and _INDENTED.match(line):
            j = _fence_end(lines, j, fence.group(1))
            continue
        if _LIST_ITEM.match(line) or _INDENTED.match(line) or not _starts_other_block(lines, j):
            j += 1
            continue
        return j
    return n


def _indented_code_end(lines: list[str], start: int) -> int:
    j = start
    while j < len(lines) and (not lines[j].strip() or _INDENTED_CODE.match(lines[j])):
        j += 1
    while j > start and not lines[j - 1].strip():
        j -= 1
    return j


def _dedent(line: str) -> str:
    return line[1:] if line.startswith("\t") else line[4:] if line.startswith("    ") else line
