"""Spreadsheet parsers (XLSX via openpyxl, CSV): each sheet region becomes bounded Markdown TABLE blocks."""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import warnings
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from ragtune.errors import ParseError
from ragtune.parse.blocks import build_document, clean_metadata, markdown_table
from ragtune.parse.safety import CORE_PROPERTIES_PART, OLE2_MAGIC, check_zip, safe_xml_parser
from ragtune.types import Block, BlockType, Document

if TYPE_CHECKING:
    from openpyxl.workbook.workbook import Workbook

logger = logging.getLogger(__name__)

#: A table block holds at most this many data rows (its header repeated on top), so that one block, and the
#: chunk made from it, always carries its column names.
TABLE_MAX_ROWS = 50
#: ... and, for wide rows, about this many characters; a row is never split, so one long row may exceed it.
TABLE_MAX_CHARS = 2000

_CORE_NAMESPACES = {"dc": "http://purl.org/dc/elements/1.1/", "dcterms": "http://purl.org/dc/terms/"}
_CSV_DELIMITERS = ",;\t|"
_CSV_SNIFF_BYTES = 64 * 1024
# Excel shows at most 15 significant digits; more is binary floating-point noise (0.1 + 0.2 = 0.30000000000000004).
_EXCEL_DIGITS = 15
# Outside this range a plain decimal would be a long run of zeros; scientific notation reads better.
_PLAIN_NUMBER_RANGE = (1e-9, 1e21)
_RULE_CELL = re.compile(r"^:?-{3,}:?$")
# Number formats rendered as Excel shows them: fixed decimals ("0.00", "#,##0.0") and percentages ("0.00%").
# Grouping commas are left out so numbers stay machine-readable; other formats (currency, zero padding,
# fractions) fall back to the plain value.
_FIXED_FORMAT = re.compile(r"[#,]*0(?:\.(0+))?")
_PERCENT_FORMAT = re.compile(r"[#,]*0(?:\.(0+))?%")

Row = list[str]


def parse_xlsx(data: bytes, source: str) -> Document:
    """Parse an Excel workbook: per sheet a HEADING with its name, then each region as header-repeating tables.

    Cached formula results are read (a formula never computed by Excel reads as an empty cell); blocks carry
    the 1-based sheet index as ``page_number``.
    """
    if data.startswith(OLE2_MAGIC):
        raise ParseError(
            source,
            "is a legacy Excel 97-2003 (.xls) or password-protected workbook — remove the password and re-save "
            "it as .xlsx",
        )
    parts = check_zip(data, source, kind="XLSX")
    import openpyxl

    with warnings.catch_warnings():
        # openpyxl warns about every feature it skips (slicers, data validation extensions); none hold cell data.
        warnings.simplefilter("ignore", UserWarning)
        try:
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # InvalidFileException, KeyError for a missing part, XML errors, forbidden DTDs...
            raise ParseError(
                source, f"not a valid XLSX ({type(exc).__name__}: {exc}) — open it in Excel and re-save it as .xlsx"
            ) from exc
        try:
            blocks = _workbook_blocks(workbook)
        except Exception as exc:  # read-only sheets are parsed lazily, so damaged sheet XML surfaces only here
            raise ParseError(
                source, f"damaged worksheet ({type(exc).__name__}: {exc}) — open it in Excel and re-save it as .xlsx"
            ) from exc
        finally:
            workbook.close()  # read-only workbooks keep the archive open until closed
    properties = _core_properties(data, source) if CORE_PROPERTIES_PART in parts else {}
    return build_document(blocks, source=source, source_type="xlsx", **properties)


def _workbook_blocks(workbook: Workbook) -> list[Block]:
    blocks: list[Block] = []
    for index, sheet in enumerate(workbook.worksheets, start=1):
        name = sheet.title
        # Read-only sheets trust the stored <dimension>: one too small drops rows, one too large ("A1:XFD1048576")
        # pads millions of empty cells. Without it, openpyxl yields exactly the rows and cells the sheet holds.
        sheet.reset_dimensions()
        rows = (_xlsx_row(row) for row in sheet.iter_rows())
        tables = sheet_blocks(rows, heading_path=[name], page_number=index)
        if tables:  # an empty sheet adds nothing, not even its name
            blocks.append(Block(type=BlockType.HEADING, text=name, level=1, heading_path=[name], page_number=index))
            blocks.extend(tables)
    return blocks


def parse_csv(data: bytes, source: str) -> Document:
    """Parse a CSV/TSV file (delimiter sniffed, encoding detected incl. GBK/GB18030) into header-repeating tables."""
    from ragtune.parse.text import decode_text

    text = decode_text(data, source)
    dialect = _sniff(text[:_CSV_SNIFF_BYTES])
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text), dialect)]
    except csv.Error as exc:
        raise ParseError(source, f"malformed CSV ({exc}) — check its quoting and re-export it") from exc
    return build_document(sheet_blocks(rows), source=source, source_type="csv")


def sheet_blocks(
    rows: Iterable[Row],
    *,
    heading_path: list[str] | None = None,
    page_number: int | None = None,
    max_rows: int | None = None,
    max_chars: int | None = None,
) -> list[Block]:
    """TABLE blocks for one sheet: regions split at fully empty rows, empty columns dropped, bounded in size.

    A region whose only content is one cell (a title or a note above a table) becomes a PARAGRAPH. The size
    limits default to ``TABLE_MAX_ROWS`` and ``TABLE_MAX_CHARS``.
    """
    blocks: list[Block] = []
    for region in _regions(rows):
        region = _drop_empty_columns(region)
        if len(region) == 1 and len(region[0]) == 1:  # empty columns are gone, so this is the only filled cell
            blocks.append(
                Block(
                    type=BlockType.PARAGRAPH,
                    text=region[0][0],
                    heading_path=heading_path or [],
                    page_number=page_number,
                )
            )
            continue
        groups = table_groups(region, max_rows=max_rows or TABLE_MAX_ROWS, max_chars=max_chars or TABLE_MAX_CHARS)
        for group in groups:
            blocks.append(
                Block(
                    type=BlockType.TABLE,
                    text=markdown_table(group),
                    heading_path=heading_path or [],
                    page_number=page_number,
                )
            )
    return blocks


def table_groups(
    rows: list[Row], *, max_rows: int = TABLE_MAX_ROWS, max_chars: int = TABLE_MAX_CHARS
) -> list[list[Row]]:
    """Split a table into tables of at most ``max_rows`` data rows and about ``max_chars``, each led by the header.

    The first row is the header; rows are never split, and every group holds at least one data row.
    """
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if not body:
        return [[header]]
    header_chars = _row_chars(header) + _row_chars(["---"] * len(header))  # the header and its rule line
    groups: list[list[Row]] = []
    current: list[Row] = []
    chars = header_chars
    for row in body:
        size = _row_chars(row)
        if current and (len(current) >= max_rows or chars + size > max_chars):
            groups.append([header, *current])
            current, chars = [], header_chars
        current.append(row)
        chars += size
    groups.append([header, *current])
    return groups


def table_cells(markdown: str) -> list[list[str]]:
    """The cell texts of a Markdown pipe table: header row first, the ``---`` rule skipped, ``\\|`` unescaped.

    The inverse of ``markdown_table`` up to whitespace, so parsed tables can be compared cell by cell with gold data.
    """
    rows: list[list[str]] = []
    rule_seen = False
    for line in markdown.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = _split_row(line)
        if len(rows) == 1 and not rule_seen and all(_RULE_CELL.match(cell) for cell in cells):
            rule_seen = True
            continue
        rows.append(cells)
    return rows


def _split_row(line: str) -> list[str]:
    """Cells of one ``| a | b \\| c |`` line, split at unescaped pipes."""
    cells: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in line[1:]:  # past the opening pipe
        if escaped:
            current.append(ch if ch == "|" else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():  # a row without its closing pipe
        cells.append("".join(current).strip())
    return cells


def _row_chars(row: Row) -> int:
    """Length of the row as a Markdown line ("| a | b |"), newline included."""
    return sum(len(cell) + 3 for cell in row) + 2


def _regions(rows: Iterable[Row]) -> Iterator[list[Row]]:
    """Runs of rows with content, separated by fully empty rows; trailing empty cells trimmed."""
    region: list[Row] = []
    for row in rows:
        while row and not row[-1]:
            row = row[:-1]
        if row:
            region.append(row)
        elif region:
            yield region
            region = []
    if region:
        yield region


def _drop_empty_columns(region: list[Row]) -> list[Row]:
    width = max(len(row) for row in region)
    padded = [row + [""] * (width - len(row)) for row in region]
    kept = [c for c in range(width) if any(row[c] for row in padded)]
    return [[row[c] for c in kept] for row in padded]


def _sniff(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """The sample's dialect among the usual delimiters; plain commas when the sniffer cannot tell (one column)."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=_CSV_DELIMITERS)
    except csv.Error:
        return csv.excel


# --- XLSX cells ---------------------------------------------------------------------------------------------


def _xlsx_row(cells: Iterable[Any]) -> Row:
    return [cell_text(getattr(cell, "value", None), getattr(cell, "number_format", None)) for cell in cells]


def cell_text(value: object, number_format: str | None = None) -> str:
    """A cell value as a person reads it: integers without ``.0``, dates without midnight, percentages as ``%``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if value.second or value.microsecond else "minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="seconds" if value.second or value.microsecond else "minutes")
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, (int, float)):
        return _number(value, number_format)
    return str(value).strip()


def _number(value: float, number_format: str | None) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    section = (number_format or "").split(";", 1)[0]  # the format for positive numbers
    percent = _PERCENT_FORMAT.fullmatch(section)
    if percent:
        return _fixed(Decimal(repr(value)) * 100, len(percent.group(1) or "")) + "%"
    fixed = _FIXED_FORMAT.fullmatch(section)
    if fixed:
        return _fixed(Decimal(repr(value)), len(fixed.group(1) or ""))
    if isinstance(value, int):
        return str(value)
    rounded = float(f"{value:.{_EXCEL_DIGITS}g}")
    if rounded == 0:
        return "0"
    low, high = _PLAIN_NUMBER_RANGE
    if not low <= abs(rounded) < high:
        return repr(rounded)
    return format(Decimal(repr(rounded)).normalize(), "f")


def _fixed(value: Decimal, decimals: int) -> str:
    """``value`` with exactly ``decimals`` places, rounding half away from zero as Excel does (0.5% -> 1%)."""
    return format(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP), "f")


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"


def _core_properties(data: bytes, source: str) -> dict[str, str | None]:
    """Title, author and dates from ``docProps/core.xml``, read directly.

    openpyxl fills what the part leaves out with its own defaults (creator "openpyxl", created now), which
    would be reported as the workbook's real metadata.
    """
    import zipfile

    from lxml import etree

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            root = etree.fromstring(archive.read(CORE_PROPERTIES_PART), safe_xml_parser())
    except Exception:  # malformed docProps must not cost the workbook's data
        logger.warning("%s: workbook properties are unreadable and are ignored", source, exc_info=True)
        return {}

    def text(tag: str) -> str | None:
        found = root.find(tag, _CORE_NAMESPACES)
        return clean_metadata(found.text) if found is not None else None

    return {
        "title": text("dc:title"),
        "author": text("dc:creator"),
        "created_at": _w3c_date(text("dcterms:created")),
        "last_modified": _w3c_date(text("dcterms:modified")),
    }


def _w3c_date(value: str | None) -> str | None:
    """An ISO 8601 timestamp from docProps' W3CDTF dates; None when absent or unreadable."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return None
