"""Parsing: turn files (text, Markdown, HTML, PDF, Word, ...) into Documents made of typed blocks."""

from ragtune.parse.blocks import HeadingPath, build_document, markdown_table
from ragtune.parse.code import CODE_EXTENSIONS, code_language, parse_code
from ragtune.parse.docx import parse_docx
from ragtune.parse.epub import parse_epub
from ragtune.parse.html import parse_html
from ragtune.parse.markdown import parse_markdown
from ragtune.parse.options import ParseOptions, current_options, parse_options
from ragtune.parse.pdf import parse_pdf, pdf_date_to_iso
from ragtune.parse.pptx import parse_pptx
from ragtune.parse.qa import parse_qa
from ragtune.parse.registry import Parser, parse, register_parser, source_type_for, supported_extensions
from ragtune.parse.safety import check_zip
from ragtune.parse.spreadsheet import parse_csv, parse_xlsx, table_cells
from ragtune.parse.text import decode_text, parse_text
from ragtune.text import detect_language

__all__ = [
    "CODE_EXTENSIONS",
    "HeadingPath",
    "ParseOptions",
    "Parser",
    "build_document",
    "check_zip",
    "code_language",
    "current_options",
    "decode_text",
    "detect_language",
    "markdown_table",
    "parse",
    "parse_code",
    "parse_csv",
    "parse_docx",
    "parse_epub",
    "parse_html",
    "parse_markdown",
    "parse_options",
    "parse_pdf",
    "parse_pptx",
    "parse_qa",
    "parse_text",
    "parse_xlsx",
    "pdf_date_to_iso",
    "register_parser",
    "source_type_for",
    "supported_extensions",
    "table_cells",
]
