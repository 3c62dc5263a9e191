"""Tests for the XLSX and CSV parsers: gold cells from xlsx2csv, value rendering, regions, bounded tables, CSV input."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse import spreadsheet
from ragtune.parse.blocks import markdown_table
from ragtune.parse.spreadsheet import cell_text, parse_csv, parse_xlsx, sheet_blocks, table_cells, table_groups
from ragtune.types import BlockType, Document

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parents[1] / "fixtures" / "office"
# xlsx2csv's `-a` output introduces each sheet with "-------- <index> - <name>".
_SHEET_SEPARATOR = re.compile(r"^-------- (\d+) - (.*)$")
# datetime.csv was written with --dateformat "%Y-%m-%d %H:%M:%S"; ragtune leaves out zero seconds.
_ZERO_SECONDS = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}):00$")


def make_xlsx(build: Callable[..., None]) -> bytes:
    """``build(workbook)`` fills a new openpyxl workbook; its saved bytes are returned."""
    import openpyxl

    workbook = openpyxl.Workbook()
    build(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def gold_sheets(name: str) -> dict[int, list[list[str]]]:
    """xlsx2csv's expected cells per 1-based sheet index, normalised to what a reader of the sheet sees.

    Normalisation: cells stripped with inner whitespace collapsed (Markdown cells are one line), fully empty
    rows and columns dropped (ragtune skips them), and zero seconds removed from timestamps.
    """
    text = (FIXTURES / f"{name}.csv").read_text(encoding="utf-8")
    sheets: dict[int, list[list[str]]] = {}
    index = 1
    for row in csv.reader(io.StringIO(text)):
        marker = _SHEET_SEPARATOR.match(row[0]) if len(row) == 1 else None
        if marker:
            index = int(marker.group(1))
            continue
        cells = [_ZERO_SECONDS.sub(r"\1", " ".join(cell.split())) for cell in row]
        if any(cells):
            sheets.setdefault(index, []).append(cells)
    return {index: _drop_empty_columns(rows) for index, rows in sheets.items()}


def _drop_empty_columns(rows: list[list[str]]) -> list[list[str]]:
    width = max(len(row) for row in rows)
    padded = [row + [""] * (width - len(row)) for row in rows]
    kept = [c for c in range(width) if any(row[c] for row in padded)]
    return [[row[c] for c in kept] for row in padded]


def sheet_cells(document: Document, sheet: int) -> list[list[str]]:
    """All cells of one sheet in row order: split tables re-joined without their repeated headers."""
    rows: list[list[str]] = []
    header: list[str] | None = None
    for block in document.blocks:
        if block.page_number != sheet or block.type is BlockType.HEADING:
            continue
        cells = [[block.text]] if block.type is BlockType.PARAGRAPH else table_cells(block.text)
        if header is not None and cells[0] == header:
            cells = cells[1:]  # the header a split table repeats
        else:
            header = cells[0]
        rows.extend(cells)
    return rows


def assert_offsets(document: Document) -> None:
    for block in document.blocks:
        assert document.text[block.start : block.end] == block.text


class TestGoldCells:
    @pytest.mark.parametrize(
        "name",
        ["last-column-empty", "utf8", "float", "percentage", "datetime", "twolettercolumns", "empty_row", "sheets"],
    )
    def test_cells_equal_xlsx2csv(self, name: str) -> None:
        document = parse_xlsx((FIXTURES / f"{name}.xlsx").read_bytes(), f"{name}.xlsx")
        gold = gold_sheets(name)
        assert gold, "the gold file has cells"
        for index, rows in gold.items():
            assert sheet_cells(document, index) == rows
        assert_offsets(document)

    def test_multi_sheet_names_and_indices(self) -> None:
        document = parse_xlsx((FIXTURES / "sheets.xlsx").read_bytes(), "sheets.xlsx")
        headings = [(b.text, b.page_number, b.heading_path) for b in document.blocks if b.type is BlockType.HEADING]
        assert headings == [
            ("Реестр", 1, ["Реестр"]),
            ("Вариант использования", 2, ["Вариант использования"]),
        ]
        for block in document.blocks:
            assert block.heading_path == [headings[block.page_number - 1][0]]

    def test_split_gold_table_repeats_header(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(spreadsheet, "TABLE_MAX_ROWS", 10)
        data = (FIXTURES / "xlsx2csv-test-file.xlsx").read_bytes()
        document = parse_xlsx(data, "xlsx2csv-test-file.xlsx")
        tables = [table_cells(b.text) for b in document.blocks if b.type is BlockType.TABLE and b.page_number == 1]
        assert len(tables) == 5  # 44 data rows in groups of at most 10
        assert all(table[0] == ["A", "B", "C"] for table in tables)
        assert all(1 <= len(table) - 1 <= 10 for table in tables)
        assert sheet_cells(document, 1) == gold_sheets("xlsx2csv-test-file")[1]

    def test_core_properties(self) -> None:
        document = parse_xlsx((FIXTURES / "float.xlsx").read_bytes(), "float.xlsx")
        assert document.author == "lminnkhanov"
        assert document.created_at == "2014-07-01T13:31:41+00:00"
        assert document.last_modified == "2014-07-01T13:33:31+00:00"

    def test_empty_core_properties_are_not_invented(self) -> None:
        # percentage.xlsx has an empty docProps/core.xml; openpyxl would report creator "openpyxl", created now.
        document = parse_xlsx((FIXTURES / "percentage.xlsx").read_bytes(), "percentage.xlsx")
        assert (document.author, document.created_at, document.last_modified) == (None, None, None)


class TestXlsx:
    def test_values_rendered_as_read(self) -> None:
        def build(workbook) -> None:
            sheet = workbook.active
            sheet.title = "Orders"
            sheet.append(["Order", "Date", "Time", "Qty", "Price", "Share", "Paid", "Total"])
            sheet.append([1001, datetime(2024, 1, 1), time(9, 30), 3, 19.5, 0.125, True, "=D2*E2"])
            sheet.append([1002, datetime(2024, 3, 5, 14, 45), time(17, 0, 15), 2.0, 0.1 + 0.2, 0.5, False, None])
            sheet["F2"].number_format = "0.0%"
            sheet["F3"].number_format = "0%"
            sheet["E2"].number_format = "0.00"
            props = workbook.properties
            props.creator = "财务部"
            props.title = "Q1 orders"
            props.created = datetime(2024, 4, 1, 8, 0)

        document = parse_xlsx(make_xlsx(build), "orders.xlsx")
        assert document.source_type == "xlsx"
        assert [b.type for b in document.blocks] == [BlockType.HEADING, BlockType.TABLE]
        assert table_cells(document.blocks[1].text) == [
            ["Order", "Date", "Time", "Qty", "Price", "Share", "Paid", "Total"],
            # openpyxl writes formulas without a cached result: the cell reads as empty, never as "=D2*E2".
            ["1001", "2024-01-01", "09:30", "3", "19.50", "12.5%", "TRUE", ""],
            ["1002", "2024-03-05 14:45", "17:00:15", "2", "0.3", "50%", "FALSE", ""],
        ]
        assert document.title == "Q1 orders"
        assert document.author == "财务部"
        assert document.created_at == "2024-04-01T08:00:00+00:00"
        # openpyxl stamps the save time as modified; the fixture test checks both dates read exactly.
        assert document.last_modified is not None
        assert_offsets(document)

    def test_regions_empty_rows_and_columns(self) -> None:
        def build(workbook) -> None:
            sheet = workbook.active
            sheet.title = "Report"
            sheet["B2"] = "Quarterly sales report"
            sheet["B4"], sheet["D4"] = "Region", "Sales"  # column C is empty throughout
            sheet["B5"], sheet["D5"] = "North", 120
            sheet["B6"], sheet["D6"] = "South", 80
            sheet["B9"], sheet["C9"] = "Notes", "Owner"
            sheet["B10"], sheet["C10"] = "Draft", "Li Wei"
            workbook.create_sheet("Empty")
            other = workbook.create_sheet("第二页")
            other.append(["产品", "数量"])
            other.append(["苹果", 5])

        document = parse_xlsx(make_xlsx(build), "report.xlsx")
        assert [(b.type, b.page_number, b.text.split("\n")[0]) for b in document.blocks] == [
            (BlockType.HEADING, 1, "Report"),
            (BlockType.PARAGRAPH, 1, "Quarterly sales report"),
            (BlockType.TABLE, 1, "| Region | Sales |"),
            (BlockType.TABLE, 1, "| Notes | Owner |"),
            (BlockType.HEADING, 3, "第二页"),  # the empty sheet adds nothing, and keeps its index
            (BlockType.TABLE, 3, "| 产品 | 数量 |"),
        ]
        assert table_cells(document.blocks[2].text) == [["Region", "Sales"], ["North", "120"], ["South", "80"]]
        assert document.blocks[5].heading_path == ["第二页"]
        assert_offsets(document)

    def test_large_sheet_is_split_with_header_repeated(self) -> None:
        def build(workbook) -> None:
            sheet = workbook.active
            sheet.append(["ID", "Name", "Note"])
            for i in range(1, 131):
                sheet.append([i, f"item {i}", "x" * (i % 7)])

        document = parse_xlsx(make_xlsx(build), "big.xlsx")
        tables = [table_cells(b.text) for b in document.blocks if b.type is BlockType.TABLE]
        assert len(tables) == 3  # 130 rows in groups of TABLE_MAX_ROWS = 50
        assert all(table[0] == ["ID", "Name", "Note"] for table in tables)
        body = [row for table in tables for row in table[1:]]
        assert body == [[str(i), f"item {i}", "x" * (i % 7)] for i in range(1, 131)]
        assert all(len(b.text) <= spreadsheet.TABLE_MAX_CHARS for b in document.blocks if b.type is BlockType.TABLE)

    @pytest.mark.parametrize("dimension", ["A1", "A1:XFD1048576"])
    def test_stored_dimension_is_not_trusted(self, dimension: str) -> None:
        def build(workbook) -> None:
            for row in [["k", "v"], ["a", 1], ["b", 2]]:
                workbook.active.append(row)

        data = make_xlsx(build)
        forged = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(forged, "w") as target:
            for info in source.infolist():
                content = source.read(info)
                if info.filename == "xl/worksheets/sheet1.xml":
                    content = content.replace(b'<dimension ref="A1:B3"/>', f'<dimension ref="{dimension}"/>'.encode())
                target.writestr(info, content)
        document = parse_xlsx(forged.getvalue(), "forged.xlsx")
        assert table_cells(document.blocks[1].text) == [["k", "v"], ["a", "1"], ["b", "2"]]

    def test_legacy_xls_rejected(self) -> None:
        ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024)
        with pytest.raises(ParseError, match=r"old\.xls: .*\(\.xls\).*re-save it as \.xlsx"):
            parse_xlsx(ole2, "old.xls")

    def test_not_a_workbook(self) -> None:
        with pytest.raises(ParseError, match="notes.xlsx: not a valid XLSX"):
            parse_xlsx(b"just some text, not a zip", "notes.xlsx")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("hello.txt", "no workbook here")
        with pytest.raises(ParseError, match="other.xlsx: not a valid XLSX"):
            parse_xlsx(buffer.getvalue(), "other.xlsx")


class TestTables:
    def test_groups_never_split_rows_and_respect_chars(self) -> None:
        rows = [["h1", "h2"]] + [[f"r{i}", "y" * 40] for i in range(30)]
        groups = table_groups(rows, max_rows=100, max_chars=300)
        assert len(groups) > 1
        assert all(group[0] == ["h1", "h2"] for group in groups)
        assert [row for group in groups for row in group[1:]] == rows[1:]
        assert all(len(markdown_table(group)) <= 300 for group in groups)

    def test_one_long_row_still_gets_its_own_group(self) -> None:
        rows = [["h"], ["z" * 500], ["short"]]
        assert table_groups(rows, max_rows=10, max_chars=100) == [[["h"], ["z" * 500]], [["h"], ["short"]]]

    def test_header_only_region(self) -> None:
        blocks = sheet_blocks([["a", "b"]])
        assert [(b.type, b.text) for b in blocks] == [(BlockType.TABLE, "| a | b |\n| --- | --- |")]

    def test_table_cells_inverts_markdown_table(self) -> None:
        rows = [["a | b", "c\\d", ""], ["1", "", "x|"], ["---", "2", "3"]]
        assert table_cells(markdown_table(rows)) == rows

    @pytest.mark.parametrize(
        ("value", "number_format", "expected"),
        [
            (3.0, "General", "3"),
            (1234567.125, "General", "1234567.125"),
            (0.1 + 0.2, "General", "0.3"),
            (4.89290024005183e17, "0", "489290024005183000"),
            (1e-12, "General", "1e-12"),
            (0.005, "0%", "1%"),  # Excel rounds half away from zero
            (2.5, "#,##0.00", "2.50"),
            (date(2024, 2, 29), None, "2024-02-29"),
            (datetime(2024, 2, 29, 0, 0), None, "2024-02-29"),
            (datetime(2024, 2, 29, 7, 5, 9), None, "2024-02-29 07:05:09"),
            (datetime(2024, 2, 29, 7, 5, tzinfo=UTC), None, "2024-02-29 07:05+00:00"),
            (None, None, ""),
            ("  padded ", None, "padded"),
        ],
    )
    def test_cell_text(self, value: object, number_format: str | None, expected: str) -> None:
        assert cell_text(value, number_format) == expected


class TestCsv:
    def test_semicolon_gbk(self) -> None:
        text = "城市;人口;面积\n北京;2189;16410.5\n上海;2487;6340.5\n\n备注;;\n"
        document = parse_csv(text.encode("gbk"), "cities.csv")
        assert document.source_type == "csv"
        assert [b.type for b in document.blocks] == [BlockType.TABLE, BlockType.PARAGRAPH]
        assert table_cells(document.blocks[0].text) == [
            ["城市", "人口", "面积"],
            ["北京", "2189", "16410.5"],
            ["上海", "2487", "6340.5"],
        ]
        assert document.blocks[1].text == "备注"
        assert document.language == "zh"
        assert_offsets(document)

    def test_utf8_bom_quoted_newline_and_tabs(self) -> None:
        text = 'name\tcomment\n"Smith, J"\t"line one\nline two"\nLee\tok\n'
        document = parse_csv(b"\xef\xbb\xbf" + text.encode("utf-8"), "people.tsv")
        assert table_cells(document.blocks[0].text) == [
            ["name", "comment"],
            ["Smith, J", "line one line two"],
            ["Lee", "ok"],
        ]

    def test_gb18030_single_column(self) -> None:
        lines = ["姓名", "张三", "李四", "王五"]
        document = parse_csv("\n".join(lines).encode("gb18030"), "names.csv")
        assert table_cells(document.blocks[0].text) == [[line] for line in lines]

    def test_large_csv_split(self) -> None:
        rows = ["id,value"] + [f"{i},{i * i}" for i in range(120)]
        document = parse_csv("\n".join(rows).encode(), "squares.csv")
        tables = [table_cells(b.text) for b in document.blocks]
        assert all(b.type is BlockType.TABLE and b.page_number is None for b in document.blocks)
        assert len(tables) == 3 and all(table[0] == ["id", "value"] for table in tables)
        assert [row for table in tables for row in table[1:]] == [[str(i), str(i * i)] for i in range(120)]

    def test_empty(self) -> None:
        document = parse_csv(b"", "empty.csv")
        assert document.blocks == [] and document.text == ""
