"""Parsing quality against gold text and tables: ragtune's ``parse`` beside a peer (markitdown), plus throughput.

Gold data come from packages (``bench/gold/fetch.py`` downloads them into .cache/gold/ on first run):

- pdf-text: Debian Reference (Debian ``debian-reference-en`` / ``-zh-cn`` 2.100), chapters 3-4 of the PDF
  (20 pages EN, 19 pages ZH) against the same chapters of the package's plain-text rendering.
- html: newspaper4k 0.9.6's test pages (12 English, 3 Chinese news articles) against its gold article text,
  and Debian Reference chapters 3-4 as HTML against the plain-text rendering.
- pdf-ocr: ocrmypdf's ``linn.pdf`` (a scan) against ``linn.txt``; pikepdf's ``congress.pdf`` (a scan with no
  transcript: characters and time only); and one page each of the English and Chinese Debian Reference
  rendered to an image-only PDF at 200 dpi, against that page's own text layer.
- tables-pdf: tabula-py 2.10.0's PDFs against the CSVs its tests expect.
- tables-xlsx: xlsx2csv 0.8.6's workbooks against the CSVs its tests expect.

Metrics:

- Text similarity = 1 - normalised Levenshtein distance (rapidfuzz; distance / length of the longer text) between
  the extracted text and the gold text after the same normalisation of both: Unicode NFKC; Markdown markup
  removed (image/link syntax keeps its text, heading/list/quote markers, ``**``/``__``/backticks, backslash
  escapes, table rule rows and pipes); ASCII rules (runs of 3+ ``-=+_``) removed; whitespace runs collapsed to
  one space; spaces next to a CJK character removed (PDF line breaks inside Chinese sentences are not text).
- Cell accuracy = share of non-empty gold cells reproduced exactly (after trimming) by the extracted tables.
  Markdown pipe tables are read back into rows; gold rows are aligned in order to extracted rows (dynamic
  programming maximising matched cells; within a row, cells match as a multiset, so a shifted column still counts).
- A file a parser rejects scores 0 and its error is recorded.
- Throughput: pages/s of ragtune's ``parse`` on the text PDFs and on the OCR pages (wall time; the machine is
  shared, so the load average and process CPU seconds are recorded too).

The peer runs from its own virtual environment (never ragtune's), called through a subprocess:

    python3 -m venv .cache/peer-venv && .cache/peer-venv/bin/pip install 'markitdown[all]'
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/parse_quality.py [--only html,pdf-text] [--no-peer]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "gold"))

from _common import RESULTS_DIR, cpu_seconds, loadavg, machine, peak_rss_mib, write_json  # noqa: E402
from fetch import DEBIAN_CHAPTERS, NEWS_ARTICLES, REPO, TABLE_PDFS, XLSX_CASES, fetch  # noqa: E402

SECTIONS = ("pdf-text", "pdf-ocr", "html", "tables-pdf", "tables-xlsx")
PEER = "markitdown"
DEFAULT_PEER_PYTHON = REPO / ".cache" / "peer-venv" / "bin" / "python"
#: The Debian Reference page rendered as a scan for the OCR section, per language (1-based, inside chapter 3).
OCR_RENDER_PAGES = {"en": 106, "zh-cn": 102}
OCR_RENDER_DPI = 200

# Runs in the peer's virtual environment: convert each file, write {path: {text, seconds, error}} as JSON.
_PEER_SCRIPT = """
import json, sys, time
from markitdown import MarkItDown
converter = MarkItDown()
results = {}
for path in json.load(open(sys.argv[1])):
    start = time.perf_counter()
    try:
        text, error = converter.convert(path).markdown, None
    except Exception as exc:
        text, error = "", f"{type(exc).__name__}: {exc}"[:500]
    results[path] = {"text": text or "", "seconds": time.perf_counter() - start, "error": error}
json.dump(results, open(sys.argv[2], "w"))
"""


# --- normalisation and metrics ---------------------------------------------------------------------------------

_CJK = r"[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_HEADING_MARK = re.compile(r"(?m)^[ \t]{0,3}#{1,6}[ \t]+")
_LIST_MARK = re.compile(r"(?m)^[ \t]*(?:[-*+•–>]|\d+[.)](?=[ \t]))[ \t]+")
_EMPHASIS = re.compile(r"\*\*|__|`")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>])")
_TABLE_RULE = re.compile(r"(?m)^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$")
_ASCII_RULE = re.compile(r"[-=+_]{3,}")
_SPACE_BY_CJK = re.compile(rf"(?<={_CJK}) | (?={_CJK})")


def normalise(text: str) -> str:
    """The comparison form of a text (see the module docstring); applied alike to gold and to every parser."""
    text = unicodedata.normalize("NFKC", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _HEADING_MARK.sub("", text)
    text = _TABLE_RULE.sub("", text)
    text = _LIST_MARK.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _ESCAPE.sub(r"\1", text)
    text = _ASCII_RULE.sub(" ", text.replace("|", " "))
    return _SPACE_BY_CJK.sub("", " ".join(text.split()))


def similarity(extracted: str, gold: str) -> float:
    """1 - normalised Levenshtein distance of the normalised texts (1.0 = identical)."""
    from rapidfuzz.distance import Levenshtein

    return round(1.0 - Levenshtein.normalized_distance(normalise(extracted), normalise(gold)), 4)


def markdown_tables(text: str) -> list[list[str]]:
    """Rows of every Markdown pipe table in ``text``, in order, with separator rows dropped and cells trimmed."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|") and len(line) > 1):
            continue
        if _TABLE_RULE.fullmatch(line):
            continue
        cells = re.split(r"(?<!\\)\|", line[1:-1])
        rows.append([cell.replace("\\|", "|").strip() for cell in cells])
    return rows


def csv_rows(path: Path) -> list[list[str]]:
    """A gold CSV's rows, trimmed; xlsx2csv's ``-------- 1 - Sheet`` separators between sheets are dropped."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle)]
    return [row for row in rows if not (len(row) == 1 and row[0].startswith("--------"))]


def cell_accuracy(extracted: list[list[str]], gold: list[list[str]]) -> tuple[float, int, int]:
    """(share of non-empty gold cells reproduced, cells matched, gold cells), gold rows aligned in order."""
    gold_rows = [Counter(cell for cell in row if cell) for row in gold]
    found_rows = [Counter(cell for cell in row if cell) for row in extracted]
    total = sum(sum(row.values()) for row in gold_rows)
    if not total:
        return 1.0, 0, 0
    # Longest-common-subsequence style alignment, weighting a row pair by the cells they share.
    previous = [0] * (len(found_rows) + 1)
    for gold_row in gold_rows:
        current = [0] * (len(found_rows) + 1)
        for j, found_row in enumerate(found_rows, start=1):
            shared = sum((gold_row & found_row).values()) if gold_row and found_row else 0
            current[j] = max(previous[j], current[j - 1], previous[j - 1] + shared)
        previous = current
    matched = previous[-1]
    return round(matched / total, 4), matched, total


# --- running the parsers ---------------------------------------------------------------------------------------


def run_ragtune(path: Path) -> dict[str, Any]:
    """ragtune's public ``parse`` on one file: its text, wall seconds, page count seen, and any ParseError."""
    from ragtune.parse import parse

    start = time.perf_counter()
    try:
        document = parse(path)
    except Exception as exc:  # a rejected file scores 0; the run goes on
        return {"text": "", "seconds": time.perf_counter() - start, "error": f"{type(exc).__name__}: {exc}"[:500]}
    seconds = time.perf_counter() - start
    ocr_blocks = sum(1 for block in document.blocks if block.is_ocr)
    return {"text": document.text, "seconds": seconds, "error": None, "ocr_blocks": ocr_blocks}


def run_peer(paths: list[Path], python: Path | None) -> dict[str, dict[str, Any]]:
    """markitdown on every path in one subprocess of its own environment; {} when the peer is off or missing."""
    if python is None or not paths:
        return {}
    if not python.exists():
        print(f"peer skipped: {python} not found (see the module docstring to install it)")
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        listing, output = Path(tmp) / "in.json", Path(tmp) / "out.json"
        listing.write_text(json.dumps([str(p) for p in paths]))
        completed = subprocess.run([str(python), "-c", _PEER_SCRIPT, str(listing), str(output)],
                                   capture_output=True, text=True, timeout=1800)
        if completed.returncode != 0:
            print(f"peer failed: {completed.stderr[-2000:]}")
            return {}
        results: dict[str, dict[str, Any]] = json.loads(output.read_text())
    return results


def _peer_version(python: Path | None) -> str | None:
    if python is None or not python.exists():
        return None
    code = "from importlib.metadata import version; print(version('markitdown'))"
    completed = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return completed.stdout.strip() or None


Scorer = Callable[[str], dict[str, Any]]


def compare(name: str, path: Path, score: Scorer, peer: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None,
            ours: dict[str, Any] | None = None) -> dict[str, Any]:
    """One file's record: the score of each parser (and its error and seconds)."""
    record: dict[str, Any] = {"file": name, **(extra or {})}
    results = {"ragtune": ours or run_ragtune(path)}
    if str(path) in peer:
        results[PEER] = peer[str(path)]
    for tool, result in results.items():
        record[tool] = {**score(result["text"]), "seconds": round(result["seconds"], 3), "chars": len(result["text"])}
        if result.get("error"):
            record[tool]["error"] = result["error"]
        if "ocr_blocks" in result:
            record[tool]["ocr_blocks"] = result["ocr_blocks"]
    return record


def text_scorer(gold: str | None) -> Scorer:
    return lambda text: {"similarity": similarity(text, gold) if gold is not None else None}


def table_scorer(gold: list[list[str]]) -> Scorer:
    def score(text: str) -> dict[str, Any]:
        accuracy, matched, total = cell_accuracy(markdown_tables(text), gold)
        return {"cell_accuracy": accuracy, "cells_matched": matched, "gold_cells": total}

    return score


# --- gold sets -------------------------------------------------------------------------------------------------

# The plain-text rendering puts no-break spaces in these headings.
_CHAPTER_LINE = {"en": r"^Chapter\s{n}\.\s", "zh-cn": r"^第\s*{n}\s*章\s"}


def book_chapters(book: Path, lang: str, first: int, last: int) -> str:
    """The plain-text book from chapter ``first``'s heading line up to (not including) chapter ``last + 1``'s."""
    text = book.read_text(encoding="utf-8")

    def line_start(n: int) -> int:
        match = re.search(_CHAPTER_LINE[lang].format(n=n), text, flags=re.MULTILINE)
        if match is None:
            raise SystemExit(f"{book}: chapter {n} heading not found — the gold layout changed; check fetch.py")
        return match.start()

    return text[line_start(first) : line_start(last + 1)]


def chapter_pages(pdf: Path, first: int, last: int) -> tuple[int, int]:
    """0-based page range [start, end) of chapters ``first``..``last``, from the PDF outline."""
    import pymupdf

    with pymupdf.open(pdf) as document:
        starts = [page for level, _title, page in document.get_toc() if level == 1]
    # The outline's first level-1 entries are the numbered chapters (1-based pages).
    return starts[first - 1] - 1, starts[last] - 1


def pdf_subset(pdf: Path, start: int, end: int, target: Path) -> int:
    """Write pages [start, end) of ``pdf`` to ``target``; returns the page count."""
    import pymupdf

    if not target.exists():
        with pymupdf.open(pdf) as source, pymupdf.open() as out:
            out.insert_pdf(source, from_page=start, to_page=end - 1)
            out.save(target)
    return end - start


def rendered_scan(pdf: Path, page_number: int, target: Path) -> str:
    """Render one page to an image-only PDF at ``OCR_RENDER_DPI`` (a clean 'scan'); returns the page's text layer."""
    import pymupdf

    with pymupdf.open(pdf) as source:
        page = source[page_number - 1]
        gold = page.get_text()
        if not target.exists():
            pixmap = page.get_pixmap(dpi=OCR_RENDER_DPI)
            with pymupdf.open() as out:
                scan = out.new_page(width=page.rect.width, height=page.rect.height)
                scan.insert_image(scan.rect, pixmap=pixmap)
                out.save(target)
    return gold


# --- sections --------------------------------------------------------------------------------------------------


def section_pdf_text(gold: Path, work: Path, peer_python: Path | None) -> dict[str, Any]:
    records, pages_total, seconds_total = [], 0, 0.0
    first, last = DEBIAN_CHAPTERS[0], DEBIAN_CHAPTERS[-1]
    jobs = []
    for lang in ("en", "zh-cn"):
        book = gold / "debian-reference" / lang
        start, end = chapter_pages(book / "book.pdf", first, last)
        subset = work / f"debian-reference-{lang}-ch{first:02d}-{last:02d}.pdf"
        pages = pdf_subset(book / "book.pdf", start, end, subset)
        jobs.append((lang, subset, pages, book_chapters(book / "book.txt", lang, first, last), (start + 1, end)))
    peer = run_peer([job[1] for job in jobs], peer_python)
    for lang, subset, pages, text, page_range in jobs:
        ours = run_ragtune(subset)
        pages_total += pages
        seconds_total += ours["seconds"]
        records.append(compare(subset.name, subset, text_scorer(text), peer, ours=ours,
                               extra={"lang": lang, "pages": pages, "book_pages": list(page_range)}))
    throughput = {"pages": pages_total, "seconds": round(seconds_total, 3),
                  "pages_per_s": round(pages_total / seconds_total, 2) if seconds_total else None}
    return {"records": records, "throughput": throughput}


def section_html(gold: Path, work: Path, peer_python: Path | None) -> dict[str, Any]:
    jobs: list[tuple[str, Path, str, str]] = []
    for lang, names in NEWS_ARTICLES.items():
        for name in names:
            page = gold / "news" / lang / f"{name}.html"
            jobs.append((f"news/{lang}/{name}", page, lang, page.with_suffix(".txt").read_text(encoding="utf-8")))
    for lang in ("en", "zh-cn"):
        book = gold / "debian-reference" / lang
        for chapter in DEBIAN_CHAPTERS:
            text = book_chapters(book / "book.txt", lang, chapter, chapter)
            jobs.append((f"debian-reference/{lang}/ch{chapter:02d}", book / f"ch{chapter:02d}.html", lang, text))
    peer = run_peer([job[1] for job in jobs], peer_python)
    records = [compare(name, page, text_scorer(text), peer, extra={"lang": lang, "set": name.split("/")[0]})
               for name, page, lang, text in jobs]
    return {"records": records}


def section_pdf_ocr(gold: Path, work: Path, peer_python: Path | None) -> dict[str, Any]:
    ocr = gold / "ocr"
    jobs: list[tuple[str, Path, str, str | None]] = [
        ("linn.pdf", ocr / "linn.pdf", "en", (ocr / "linn.txt").read_text(encoding="utf-8")),
        ("congress.pdf", ocr / "congress.pdf", "en", None),
    ]
    for lang, page in OCR_RENDER_PAGES.items():
        target = work / f"debian-reference-{lang}-p{page}-scan.pdf"
        text = rendered_scan(gold / "debian-reference" / lang / "book.pdf", page, target)
        jobs.append((target.name, target, lang, text))
    peer = run_peer([job[1] for job in jobs], peer_python)
    records, seconds_total = [], 0.0
    for name, path, lang, text in jobs:
        ours = run_ragtune(path)
        seconds_total += ours["seconds"]
        records.append(compare(name, path, text_scorer(text), peer, ours=ours, extra={"lang": lang, "pages": 1}))
    # Only pages that OCR actually read count: a page rejected in milliseconds says nothing about OCR speed.
    read = [r for r in records if r["ragtune"].get("ocr_blocks")]
    seconds_read = sum(r["ragtune"]["seconds"] for r in read)
    throughput = {"pages": len(records), "pages_with_ocr_text": len(read), "seconds_all": round(seconds_total, 3),
                  "pages_per_s": round(len(read) / seconds_read, 3) if seconds_read else None}
    return {"records": records, "throughput": throughput}


def section_tables_pdf(gold: Path, work: Path, peer_python: Path | None) -> dict[str, Any]:
    folder = gold / "tables-pdf"
    peer = run_peer([folder / pdf for pdf, _csv, _pages in TABLE_PDFS], peer_python)
    records = [compare(pdf, folder / pdf, table_scorer(csv_rows(folder / gold_csv)), peer, extra={"gold": gold_csv})
               for pdf, gold_csv, _pages in TABLE_PDFS]
    return {"records": records}


def section_tables_xlsx(gold: Path, work: Path, peer_python: Path | None) -> dict[str, Any]:
    folder = gold / "tables-xlsx"
    peer = run_peer([folder / f"{case}.xlsx" for case in XLSX_CASES], peer_python)
    records = [compare(f"{case}.xlsx", folder / f"{case}.xlsx", table_scorer(csv_rows(folder / f"{case}.csv")), peer)
               for case in XLSX_CASES]
    return {"records": records}


RUNNERS = {
    "pdf-text": section_pdf_text,
    "pdf-ocr": section_pdf_ocr,
    "html": section_html,
    "tables-pdf": section_tables_pdf,
    "tables-xlsx": section_tables_xlsx,
}


# --- summary ---------------------------------------------------------------------------------------------------


def summarise(section: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean score per (group, tool); groups are languages (text) or the whole section (tables)."""
    metric = "cell_accuracy" if section.startswith("tables") else "similarity"
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in result["records"]:
        group = record.get("set", "") + ("/" if record.get("set") else "") + record.get("lang", "all")
        for tool in ("ragtune", PEER):
            if tool in record and record[tool].get(metric) is not None:
                groups.setdefault((group, tool), []).append(record[tool])
    rows = []
    for (group, tool), scores in sorted(groups.items()):
        values = [s[metric] for s in scores]
        rows.append({"section": section, "group": group, "tool": tool, "metric": metric, "files": len(values),
                     "errors": sum(1 for s in scores if s.get("error")),
                     "mean": round(sum(values) / len(values), 4),
                     "seconds": round(sum(s["seconds"] for s in scores), 2)})
    return rows


def markdown_summary(rows: list[dict[str, Any]]) -> str:
    """Sections as rows, ragtune and the peer side by side."""
    table: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        table.setdefault((row["section"], row["group"], row["metric"]), {})[row["tool"]] = row
    lines = [f"| section | set | metric | files | ragtune | {PEER} | ragtune s | {PEER} s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (section, group, metric), tools in table.items():
        ours, peer = tools.get("ragtune"), tools.get(PEER)

        def cell(row: dict[str, Any] | None, key: str) -> str:
            if row is None:
                return "-"
            errors = f" ({row['errors']} err)" if key == "mean" and row["errors"] else ""
            return f"{row[key]:.3f}{errors}" if key == "mean" else f"{row[key]:.1f}"

        files = (ours or peer or {}).get("files", 0)
        lines.append(f"| {section} | {group} | {metric} | {files} | {cell(ours, 'mean')} | {cell(peer, 'mean')} | "
                     f"{cell(ours, 'seconds')} | {cell(peer, 'seconds')} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON,
                        help="python of the virtual environment where markitdown is installed")
    parser.add_argument("--no-peer", action="store_true", help="measure ragtune only")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "parse_quality.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    peer_python = None if args.no_peer else args.peer_python
    gold = fetch()
    work = gold / "derived"
    work.mkdir(exist_ok=True)
    load_start, cpu_start, wall_start = loadavg(), cpu_seconds(), time.perf_counter()
    results: dict[str, Any] = {}
    summary: list[dict[str, Any]] = []
    for section in sections:
        started = time.perf_counter()
        print(f"== {section}", flush=True)
        results[section] = RUNNERS[section](gold, work, peer_python)
        results[section]["wall_s"] = round(time.perf_counter() - started, 2)
        results[section]["loadavg_after"] = loadavg()
        summary += summarise(section, results[section])
    # A partial run (--only) replaces its own sections in an earlier result and keeps the others.
    if args.out.exists() and set(sections) != set(SECTIONS):
        earlier = json.loads(args.out.read_text())
        results = {**{k: v for k, v in earlier.get("sections", {}).items() if k not in results}, **results}
        summary = [row for row in earlier.get("summary", []) if row["section"] not in sections] + summary
        summary.sort(key=lambda row: SECTIONS.index(row["section"]))
    table = markdown_summary(summary)
    print(table)
    for section in sections:
        if "throughput" in results[section]:
            print(f"{section} throughput (ragtune): {results[section]['throughput']}")
    write_json(args.out, {
        "benchmark": "parse_quality",
        "machine": machine(),
        "peer": {"name": PEER, "version": _peer_version(peer_python)},
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "cpu_s": round(cpu_seconds() - cpu_start, 2),
        "wall_s": round(time.perf_counter() - wall_start, 2),
        "peak_rss_mib": peak_rss_mib(),
        "normalisation": normalise.__doc__,
        "summary": summary,
        "summary_markdown": table,
        "sections": results,
    })


if __name__ == "__main__":
    main()
