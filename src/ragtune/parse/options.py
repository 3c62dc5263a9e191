"""Limits and OCR choices that every format parser honours, passed to parsers in a context variable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any


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
