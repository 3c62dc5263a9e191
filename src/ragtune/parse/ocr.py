"""OCR of rendered page images (scanned PDFs): Tesseract by default, RapidOCR as an alternative, behind one call.

Measured on gold scans (ocrmypdf's linn.pdf and rendered English/Chinese pages), Tesseract 5 was at least as
accurate as RapidOCR everywhere and far better on English (RapidOCR's PP-OCR model dropped whole lines and the
spaces between words), so it is the default whenever its binary is installed.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from ragtune.text import CJK_WIDE

logger = logging.getLogger(__name__)

#: Engines in the order ``engine=None`` tries them.
ENGINES = ("tesseract", "rapidocr")

INSTALL_HINT = (
    "install Tesseract (apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim) "
    "or RapidOCR (pip install rapidocr-onnxruntime)"
)

#: Whitespace between two CJK characters is an OCR artefact: Chinese and Japanese are written without spaces.
_CJK_GAP = re.compile(f"(?<=[{CJK_WIDE}])\\s+(?=[{CJK_WIDE}])")


class OcrError(Exception):
    """OCR could not produce text for a page; the message says why and what to change."""


class OcrUnavailableError(OcrError):
    """No OCR engine (or not the requested one) is installed."""


class OcrTimeoutError(OcrError):
    """OCR of one page ran past its time limit."""


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: its text, its box in image pixels (x0, y0, x1, y1), and its paragraph.

    Lines come in reading order; consecutive lines with the same ``paragraph`` number form one paragraph.
    """

    text: str
    bbox: tuple[float, float, float, float]
    paragraph: int


def available_engine() -> str | None:
    """The engine ``ocr_page_image`` uses when none is named, or None when no engine is installed."""
    return next((name for name in ENGINES if _engine_installed(name)), None)


def ocr_page_image(
    png: bytes,
    *,
    languages: str = "eng+chi_sim",
    dpi: int = 300,
    timeout: float = 120.0,
    engine: str | None = None,
) -> list[OcrLine]:
    """Recognise the text of one page image (PNG bytes rendered at ``dpi``).

    ``languages`` are Tesseract codes joined by "+" (RapidOCR's model reads Chinese and English whatever is
    asked). Raises ``OcrUnavailableError`` when no engine is installed and ``OcrTimeoutError`` after ``timeout``
    seconds.
    """
    if timeout <= 0:
        raise ValueError("timeout must be greater than 0")
    name = engine or available_engine()
    if name is None:
        raise OcrUnavailableError(f"OCR is not available — {INSTALL_HINT}")
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of {', '.join(ENGINES)}")
    if not _engine_installed(name):
        raise OcrUnavailableError(f"the OCR engine {name!r} is not installed — {INSTALL_HINT}")
    if name == "tesseract":
        return _tesseract(png, languages, dpi, timeout)
    return _rapidocr(png, timeout)


def join_words(words: list[str]) -> str:
    """Join recognised words with spaces, except between CJK characters."""
    return _CJK_GAP.sub("", " ".join(word for word in words if word))


def _engine_installed(name: str) -> bool:
    if name == "tesseract":
        return _tesseract_binary() is not None
    if name == "rapidocr":
        import importlib.util

        return importlib.util.find_spec("rapidocr_onnxruntime") is not None
    return False


# --- Tesseract (the binary, run per page so a timeout can kill it) -----------------------------------------


def _tesseract_binary() -> str | None:
    return shutil.which("tesseract")


@functools.cache
def _tesseract_languages(binary: str) -> frozenset[str]:
    """Language packs the installed Tesseract has (``tesseract --list-langs``)."""
    result = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False)
    # The first line is a header naming the tessdata folder; the codes follow, one per line.
    return frozenset(line.strip() for line in result.stdout.splitlines()[1:] if line.strip())


def _usable_languages(binary: str, languages: str) -> str:
    wanted = [code for code in languages.split("+") if code.strip()]
    installed = _tesseract_languages(binary)
    usable = [code for code in wanted if code in installed]
    missing = [code for code in wanted if code not in installed]
    if not usable:
        raise OcrUnavailableError(
            f"Tesseract has no language data for {languages!r} (installed: {', '.join(sorted(installed)) or 'none'})"
            f" — install tesseract-ocr-{wanted[0].replace('_', '-') if wanted else 'eng'} or change ocr_languages"
        )
    if missing:
        _warn_missing_languages(tuple(missing))
    return "+".join(usable)


@functools.cache
def _warn_missing_languages(missing: tuple[str, ...]) -> None:
    # Cached so a long scanned book warns once, not once per page.
    packages = " ".join(f"tesseract-ocr-{code.replace('_', '-')}" for code in missing)
    logger.warning("Tesseract lacks language data for %s; OCR runs without it — apt-get install %s", missing, packages)


def _tesseract(png: bytes, languages: str, dpi: int, timeout: float) -> list[OcrLine]:
    binary = _tesseract_binary()
    assert binary is not None  # checked by the caller
    langs = _usable_languages(binary, languages)
    command = [binary, "stdin", "stdout", "-l", langs, "--dpi", str(dpi), "tsv"]
    try:
        result = subprocess.run(command, input=png, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OcrTimeoutError(f"Tesseract took longer than {timeout:g} s") from exc
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrError(f"Tesseract failed ({message[-1] if message else f'exit code {result.returncode}'})")
    return _lines_from_tsv(result.stdout.decode("utf-8", "replace"))


def _lines_from_tsv(tsv: str) -> list[OcrLine]:
    """Group Tesseract's word rows into lines, keeping its reading order and paragraph structure."""
    lines: list[OcrLine] = []
    paragraphs: dict[tuple[str, str, str], int] = {}
    words: list[str] = []
    box: list[float] = []
    current: tuple[str, str, str, str] | None = None

    def flush() -> None:
        if current is not None and words:
            text = join_words(words)
            if text.strip():
                paragraph = paragraphs.setdefault(current[:3], len(paragraphs))
                lines.append(OcrLine(text, (box[0], box[1], box[2], box[3]), paragraph))

    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:  # level 5 rows are words; the others describe the layout
            continue
        key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
        left, top = float(row["left"]), float(row["top"])
        right, bottom = left + float(row["width"]), top + float(row["height"])
        if key != current:
            flush()
            current, words, box = key, [], [left, top, right, bottom]
        words.append(text)
        box = [min(box[0], left), min(box[1], top), max(box[2], right), max(box[3], bottom)]
    flush()
    return lines


# --- RapidOCR (in-process ONNX models shipped in the wheel) ----------------------------------------------


@functools.cache
def _rapidocr_engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or -1
    return RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads)


def _rapidocr(png: bytes, timeout: float) -> list[OcrLine]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = _rapidocr_engine()(png)[0] or []
        except Exception as exc:  # reported to the caller below
            outcome["error"] = exc

    # ONNX inference cannot be interrupted; on timeout the worker thread finishes in the background and its
    # result is dropped, which is the best an in-process engine allows.
    worker = threading.Thread(target=run, name="ragtune-rapidocr", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise OcrTimeoutError(f"RapidOCR took longer than {timeout:g} s")
    if "error" in outcome:
        raise OcrError(f"RapidOCR failed ({type(outcome['error']).__name__}: {outcome['error']})")
    return _lines_from_rapidocr(outcome["result"])


def _lines_from_rapidocr(result: list[Any]) -> list[OcrLine]:
    """RapidOCR returns lines top to bottom; lines close below each other and left-aligned form a paragraph."""
    lines: list[OcrLine] = []
    paragraph = -1
    previous: tuple[float, float, float, float] | None = None
    for points, text, _score in result:
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
        box = (min(xs), min(ys), max(xs), max(ys))
        height = box[3] - box[1]
        if previous is None or box[1] - previous[3] > 0.8 * height or abs(box[0] - previous[0]) > 2 * height:
            paragraph += 1
        lines.append(OcrLine(join_words([str(text).strip()]), box, paragraph))
        previous = box
    return [line for line in lines if line.text]
