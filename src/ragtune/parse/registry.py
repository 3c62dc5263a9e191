"""Parser registry and dispatch: choose a format parser by file extension and turn failures into ParseError."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import ParseError
from ragtune.parse import code, docx, epub, html, markdown, pdf, pptx, qa, spreadsheet, text
from ragtune.parse.options import ParseOptions, current_options, parse_options
from ragtune.types import Document

logger = logging.getLogger(__name__)

#: A format parser: ``(file bytes, source name) -> Document``. It raises ``ParseError`` for input it rejects.
Parser = Callable[[bytes, str], Document]


@dataclass(frozen=True)
class _Entry:
    parser: Parser
    source_type: str


# Parsers a user registers replace these (built-ins first, so user registrations win).
_BUILTINS: list[tuple[tuple[str, ...], Parser, str]] = [
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
_registry: dict[str, _Entry] = {ext: _Entry(p, t) for exts, p, t in _BUILTINS for ext in exts}


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
        _registry[ext] = entry


def supported_extensions() -> list[str]:
    """Every file extension ``parse`` accepts, lower case with the leading dot, sorted."""
    return sorted(_registry)


def _extension(filename: str) -> str:
    return Path(filename).suffix.lower()


def source_type_for(filename: str | Path) -> str | None:
    """The ``source_type`` a file would be parsed as (``"pdf"``, ``"md"``, ...), or None when it is unsupported."""
    entry = _registry.get(_extension(str(filename)))
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
    entry = _registry.get(ext)
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


