"""Parsing: turn files (text, Markdown, HTML, PDF, Word) into Documents made of typed blocks."""

from ragtune.parse.base import (
    HeadingPath,
    ParseOptions,
    Parser,
    build_document,
    current_options,
    detect_language,
    markdown_table,
    parse,
    parse_options,
    register_parser,
    source_type_for,
    supported_extensions,
)
from ragtune.parse.code import CODE_EXTENSIONS, code_language, parse_code
from ragtune.parse.docx import parse_docx
from ragtune.parse.epub import parse_epub
from ragtune.parse.html import parse_html
from ragtune.parse.markdown import parse_markdown
from ragtune.parse.pdf import parse_pdf, pdf_date_to_iso
from ragtune.parse.pptx import parse_pptx
from ragtune.parse.qa import parse_qa
from ragtune.parse.safety import check_zip
from ragtune.parse.spreadsheet import parse_csv, parse_xlsx, table_cells
from ragtune.parse.text import decode_text, parse_text

__all__ = [
    "CODE_EXTENSIONS",
    "check_zip",
    "code_language",
    "parse_code",
    "parse_csv",
    "parse_epub",
    "parse_pptx",
    "parse_qa",
    "parse_xlsx",
    "table_cells",
    "HeadingPath",
    "ParseOptions",
    "Parser",
    "build_document",
    "current_options",
    "decode_text",
    "detect_language",
    "markdown_table",
    "parse",
    "parse_options",
    "parse_docx",
    "parse_html",
    "parse_markdown",
    "parse_pdf",
    "parse_text",
    "pdf_date_to_iso",
    "register_parser",
    "source_type_for",
    "supported_extensions",
]
