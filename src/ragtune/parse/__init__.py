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
from ragtune.parse.docx import parse_docx
from ragtune.parse.html import parse_html
from ragtune.parse.markdown import parse_markdown
from ragtune.parse.pdf import parse_pdf, pdf_date_to_iso
from ragtune.parse.text import decode_text, parse_text

__all__ = [
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
