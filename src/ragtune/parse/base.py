"""Parser registry and dispatch: choose a format parser by file extension and turn failures into ParseError."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ragtune.errors import ParseError
from ragtune.types import Block, BlockType, Document

logger = logging.getLogger(__name__)

#: A format parser: ``(file bytes, source name) -> Document``. It raises ``ParseError`` for input it rejects.
Parser = Callable[[bytes, str], Document]


@dataclass(frozen=True)
class _Entry:
    parser: Parser
    source_type: str


@dataclass(frozen=True)
class ParseOptions:
    """Limits and OCR choices every format parser honours; read inside a parser with ``current_options()``.

    They travel in a context variable rather than in the ``Parser`` signature so that user-registered
    parsers keep working unchanged.
    """

    #: Pages (PDF) or slides (PPTX) read at most; later ones are dropped with a warning.
    max_pages: int = 2000
    #: "auto" = OCR pages without a usable text layer; "off" = never (such pages raise/are skipped);
    #: "force" = OCR every page.
    ocr: str = "auto"
    #: Tesseract language codes joined by "+".
    ocr_languages: str = "eng+chi_sim"
    ocr_dpi: int = 300
    #: Seconds one page's OCR may take before it is abandoned with a clear error.
    ocr_timeout_s: float = 120.0
    #: Container formats (DOCX, PPTX, XLSX, EPUB are ZIP files): limits against zip bombs.
    max_archive_member_bytes: int = 256 * 1024 * 1024
    max_archive_total_bytes: int = 1024 * 1024 * 1024
    max_archive_ratio: float = 200.0
    max_archive_members: int = 20_000

    def __post_init__(self) -> None:
        if self.ocr not in ("auto", "off", "force"):
            raise ValueError(f"ocr must be 'auto', 'off' or 'force', not {self.ocr!r}")

    def updated(self, **changes: Any) -> ParseOptions:
        return replace(self, **changes)


_DEFAULT_OPTIONS = ParseOptions()
_options: ContextVar[ParseOptions | None] = ContextVar("ragtune_parse_options", default=None)


def current_options() -> ParseOptions:
    """The options of the ``parse`` call in progress (defaults outside one)."""
    return _options.get() or _DEFAULT_OPTIONS


@contextmanager
def parse_options(options: ParseOptions) -> Iterator[ParseOptions]:
    """Make ``options`` current for the parsers called inside the block."""
    token = _options.set(options)
    try:
        yield options
    finally:
        _options.reset(token)


_registry: dict[str, _Entry] = {}
_builtins_loaded = False


def _normalise_extension(extension: str) -> str:
    extension = extension.strip().lower()
    return extension if extension.startswith(".") else f".{extension}"


def register_parser(extensions: str | Iterable[str], parser: Parser, *, source_type: str | None = None) -> None:
    """Register ``parser`` for one or more file extensions (``".pdf"`` or ``"pdf"``), replacing any earlier one.

    ``source_type`` is the label stored on documents and chunks; it defaults to the first extension without its dot.
    """
    exts = [extensions] if isinstance(extensions, str) else list(extensions)
    if not exts:
        raise ValueError("register_parser needs at least one extension")
    normalised = [_normalise_extension(ext) for ext in exts]
    entry = _Entry(parser, source_type or normalised[0].lstrip("."))
    for ext in normalised:
        _entries()[ext] = entry


def _entries() -> dict[str, _Entry]:
    """The registry, with the built-in parsers added on first use.

    Loading them lazily keeps ``import ragtune.parse`` cheap and lets the format modules import this one;
    parsers a user registered before first use win over the built-ins.
    """
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from ragtune.parse import code, docx, epub, html, markdown, pdf, pptx, qa, spreadsheet, text

        builtins: list[tuple[tuple[str, ...], Parser, str]] = [
            ((".txt", ".text", ".log"), text.parse_text, "txt"),
            ((".md", ".markdown"), markdown.parse_markdown, "md"),
            ((".html", ".htm", ".xhtml"), html.parse_html, "html"),
            ((".pdf",), pdf.parse_pdf, "pdf"),
            ((".docx",), docx.parse_docx, "docx"),
            ((".pptx",), pptx.parse_pptx, "pptx"),
            # A real .xls gets a clear "re-save it as .xlsx"; an .xlsx renamed to .xls still parses.
            ((".xlsx", ".xlsm", ".xls"), spreadsheet.parse_xlsx, "xlsx"),
            ((".csv", ".tsv"), spreadsheet.parse_csv, "csv"),
            ((".epub",), epub.parse_epub, "epub"),
            # Q&A records become one pair per chunk (source type "qa"); any other JSON is still searchable.
            ((".json", ".jsonl", ".ndjson"), qa.parse_qa, "json"),
            (tuple(code.CODE_EXTENSIONS), code.parse_code, "code"),
        ]
        for exts, parser, source_type in builtins:
            for ext in exts:
                _registry.setdefault(ext, _Entry(parser, source_type))
    return _registry


def supported_extensions() -> list[str]:
    """Every file extension ``parse`` accepts, lower case with the leading dot, sorted."""
    return sorted(_entries())


def _extension(filename: str) -> str:
    return Path(filename).suffix.lower()


def source_type_for(filename: str | Path) -> str | None:
    """The ``source_type`` a file would be parsed as (``"pdf"``, ``"md"``, ...), or None when it is unsupported."""
    entry = _entries().get(_extension(str(filename)))
    return entry.source_type if entry else None


def parse(
    source: str | Path | bytes,
    *,
    filename: str | None = None,
    max_bytes: int | None = None,
    options: ParseOptions | None = None,
) -> Document:
    """Parse a file (a path, or its bytes plus ``filename``) into a Document of typed blocks.

    ``filename``, when given, names the document and its extension chooses the parser. ``options`` (limits,
    OCR) are current for the parser while it runs. Anything that goes wrong with the file itself raises
    ``ParseError`` naming it and the cause.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not filename:
            raise ValueError("filename is required when parsing bytes; it names the source and gives its extension")
        name = filename
        data = bytes(source)
        _check_size(name, len(data), max_bytes)
        entry = _lookup(name)
    else:
        path = Path(source)
        name = filename or str(path)
        entry = _lookup(name)
        data = _read(path, name, max_bytes)

    try:
        with parse_options(options or current_options()):
            document = entry.parser(data, name)
    except ParseError:
        raise
    except Exception as exc:
        # Format libraries raise all kinds of things on odd input; one bad file must never stop an ingestion run.
        logger.debug("parser for %s failed", name, exc_info=True)
        raise ParseError(
            name,
            f"could not read this {entry.source_type} file ({type(exc).__name__}: {exc}) — check that it opens "
            "in its usual application and re-save it",
        ) from exc
    logger.debug("parsed %s: %d blocks, %d characters", name, len(document.blocks), len(document.text))
    return document


def _lookup(name: str) -> _Entry:
    ext = _extension(name)
    entry = _entries().get(ext)
    if entry is None:
        shown = f"'{ext}'" if ext else "(no extension)"
        raise ParseError(name, f"unsupported file type {shown} — supported: {', '.join(supported_extensions())}")
    return entry


def _check_size(name: str, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise ParseError(
            name, f"file is larger than max_bytes={max_bytes} ({size} bytes) — raise RAGTUNE_MAX_FILE_BYTES"
        )


def _read(path: Path, name: str, max_bytes: int | None) -> bytes:
    try:
        # Check the size before reading so an oversized file is never loaded into memory.
        _check_size(name, path.stat().st_size, max_bytes)
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ParseError(name, "file not found — check the path") from exc
    except IsADirectoryError as exc:
        raise ParseError(name, "is a directory, not a file — pass the files inside it") from exc
    except PermissionError as exc:
        raise ParseError(name, "permission denied — make the file readable") from exc
    except OSError as exc:
        raise ParseError(name, f"cannot read file ({exc.strerror or exc}) — check the path and the disk") from exc


# --- helpers shared by the format parsers -------------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
#: Share of letters that must be CJK ideographs for a text to count as Chinese. Each ideograph carries about
#: a word's meaning, so Chinese text with English terms mixed in still has far fewer letters than a word count.
_ZH_SHARE = 0.3
#: Enough text to decide; reading more only costs time.
_LANGUAGE_SAMPLE = 20_000


def detect_language(text: str) -> str | None:
    """``"zh"`` when CJK ideographs are a large share of the letters, ``"en"`` otherwise; None without letters."""
    sample = text[:_LANGUAGE_SAMPLE]
    letters = sum(1 for ch in sample if ch.isalpha())
    if not letters:
        return None
    return "zh" if len(_CJK.findall(sample)) / letters >= _ZH_SHARE else "en"


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines included) become one space; the ends are stripped."""
    return " ".join(text.split())


def markdown_table(rows: list[list[str]]) -> str:
    """Render rows of cell texts as a Markdown pipe table; the first row is the header.

    Cells are flattened to one line with ``|`` escaped, and short rows are padded so every row has the
    same number of columns.
    """
    cleaned = [[collapse_whitespace(cell).replace("|", "\\|") for cell in row] for row in rows if row]
    if not cleaned:
        return ""
    width = max(len(row) for row in cleaned)
    padded = [row + [""] * (width - len(row)) for row in cleaned]
    lines = ["| " + " | ".join(padded[0]) + " |", "| " + " | ".join(["---"] * width) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in padded[1:]]
    return "\n".join(lines)


class HeadingPath:
    """Tracks the enclosing headings while blocks are read in document order."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, text: str) -> list[str]:
        """Record a heading; returns its own path (the enclosing headings, then itself)."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))
        return self.path

    @property
    def path(self) -> list[str]:
        """Texts of the headings enclosing the current position, outermost first."""
        return [text for _, text in self._stack]


def build_document(blocks: list[Block], *, source: str, source_type: str, **fields: Any) -> Document:
    """Assemble blocks into a Document, filling ``language`` and, when missing, ``title`` from the first heading."""
    document = Document.assemble(blocks, source=source, source_type=source_type, **fields)
    if document.language is None:
        document.language = detect_language(document.text)
    if document.title is None:
        document.title = next((b.text for b in document.blocks if b.type is BlockType.HEADING), None)
    return document


def clean_metadata(value: object) -> str | None:
    """A metadata string stripped, with empty or missing values as None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
