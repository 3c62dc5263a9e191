"""Plain-text parser: detect the encoding, normalise newlines and split paragraphs on blank lines."""

from __future__ import annotations

import codecs
import logging
import re

from ragtune.errors import ParseError
from ragtune.parse.blocks import build_document
from ragtune.types import Block, BlockType, Document

logger = logging.getLogger(__name__)

# UTF-32 LE must be tested before UTF-16 LE: its BOM begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Double-byte encodings that charset-normalizer cannot tell from GB18030 on short Chinese text (all score as
# equally plausible); GB18030 is by far the most common legacy encoding of the Chinese files this reads.
_AMBIGUOUS_WITH_GB18030 = {
    "big5",
    "cp950",
    "cp949",
    "euc_kr",
    "johab",
    "cp932",
    "shift_jis",
    "euc_jp",
    "euc_jis_2004",
    "utf_16_be",
    "utf_16_le",
    "utf_32_be",
    "utf_32_le",
}

_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


def decode_text(data: bytes, source: str) -> str:
    """Decode text bytes (BOM, then UTF-8, then detected encoding) and normalise newlines to ``\\n``."""
    return _normalise_newlines(_decode(data, source))


def _decode(data: bytes, source: str) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(
                    source, f"text has a {encoding} byte-order mark but is not valid {encoding} — re-save it as UTF-8"
                ) from exc
    # NUL bytes are valid UTF-8 but never occur in real UTF-8 text: they mean UTF-16/32 without a BOM, or binary.
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass

    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(source, "could not detect the text encoding (binary file?) — re-save it as UTF-8 text")
    encoding = best.encoding
    if encoding in _AMBIGUOUS_WITH_GB18030:
        gb = next((m for m in matches if m.encoding == "gb18030" and m.chaos <= best.chaos), None)
        if gb is not None:
            encoding = "gb18030"
    logger.debug("%s: decoded as %s", source, encoding)
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ParseError(source, f"could not decode the text as {encoding} — re-save it as UTF-8") from exc


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_text(data: bytes, source: str) -> Document:
    """Parse plain text: every run of lines separated by a blank line (or a form feed) is a PARAGRAPH block."""
    text = decode_text(data, source).replace("\f", "\n\n")
    blocks = [Block(type=BlockType.PARAGRAPH, text=part) for part in _BLANK_LINES.split(text)]
    return build_document(blocks, source=source, source_type="txt")
