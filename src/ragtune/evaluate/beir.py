"""Load a dataset in BEIR layout: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.jsonl import read_jsonl

log = logging.getLogger(__name__)

_LAYOUT_HINT = "a BEIR dataset folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
#: Where the BEIR datasets are published (one zip per dataset); RAGTUNE_BEIR_URL overrides it (a mirror).
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR split: the corpus, the queries judged in the split, and their relevance judgements."""

    corpus: dict[str, dict[str, str]]  # doc id -> {"title": ..., "text": ...}
    queries: dict[str, str]  # query id -> text, only the queries the split's qrels judge
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> graded relevance


def load_beir(directory: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR-format dataset; the queries are restricted to those judged in ``qrels/<split>.tsv``.

    Raises:
        ConfigError: a file is missing or malformed, naming it, the line, and the splits that exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory — {_LAYOUT_HINT}")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (directory / name).is_file():
            raise ConfigError(f"{name} not found in {directory} — {_LAYOUT_HINT}")
    qrels_path = directory / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise ConfigError(f"qrels/{split}.tsv not found in {directory} — available splits: {_splits(directory)}")

    qrels = _read_qrels(qrels_path)
    corpus = {
        doc_id: {"title": str(row.get("title") or ""), "text": str(row.get("text") or "")}
        for doc_id, row in _rows_by_id(directory / "corpus.jsonl")
    }
    all_queries = {query_id: str(row.get("text") or "") for query_id, row in _rows_by_id(directory / "queries.jsonl")}
    missing = [query_id for query_id in qrels if query_id not in all_queries]
    if missing:
        raise ConfigError(
            f"qrels/{split}.tsv judges {len(missing)} queries that are not in queries.jsonl "
            f"(e.g. '{missing[0]}') in {directory} — the dataset is incomplete; re-download it"
        )
    queries = {query_id: all_queries[query_id] for query_id in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)


def _splits(directory: Path) -> str:
    names = sorted(path.stem for path in (directory / "qrels").glob("*.tsv"))
    return ", ".join(names) if names else "none (no qrels/*.tsv files)"


def _rows_by_id(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, row in read_jsonl(path):
        if "_id" not in row:
            raise ConfigError(f"{path} line {number}: expected a JSON object with an '_id' field")
        yield str(row["_id"]), row


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    first = True
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            is_first, first = first, False
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise ConfigError(
                    f"{path} line {number}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                    f"got {len(fields)}"
                )
            query_id, doc_id, score = fields
            try:
                relevance = int(score)
            except ValueError:
                if is_first:  # the header line, "query-id\tcorpus-id\tscore" in BEIR's files
                    continue
                raise ConfigError(f"{path} line {number}: score must be an integer, got '{score}'") from None
            qrels.setdefault(query_id, {})[doc_id] = relevance
    return qrels


def split_query_ids(query_ids: Sequence[str], *, heldout: float = 0.2, dev: float = 0.0, seed: int = 0
                    ) -> tuple[list[str], list[str], list[str]]:
    """(train, dev, held-out) query ids, by a seeded hash of each id: stable across runs and machines, and
    a query keeps its side when others are added. Fractions are of all queries."""
    if not 0 <= heldout < 1 or not 0 <= dev < 1 or heldout + dev >= 1:
        raise ConfigError(f"held-out ({heldout}) and dev ({dev}) fractions must be in [0, 1) and sum below 1")
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for qid in query_ids:
        u = int.from_bytes(hashlib.sha256(f"{seed}:{qid}".encode()).digest()[:8], "big") / 2**64
        parts[2 if u < heldout else 1 if u < heldout + dev else 0].append(qid)
    return parts


def beir_cache_dir() -> Path:
    """Where downloaded BEIR datasets are kept: $RAGTUNE_DATA_CACHE/beir, else ~/.cache/ragtune/beir."""
    root = os.environ.get("RAGTUNE_DATA_CACHE")
    return Path(root) / "beir" if root else Path.home() / ".cache" / "ragtune" / "beir"


def resolve_beir(
    source: str | Path, *, download: bool = False, cache_dir: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The folder of a BEIR dataset: ``source`` itself when it is a folder, else the dataset of that name in the
    cache (``beir_cache_dir()``), downloaded first when ``download`` (the only time ragtune goes online for data;
    ``on_progress(bytes done, bytes total)`` follows the download)."""
    path = Path(source)
    if path.is_dir():
        return path
    name = str(source)
    if not _NAME.match(name):
        raise ConfigError(f"{source}: no such folder — give a BEIR dataset folder or a dataset name such as 'scifact'")
    target = (cache_dir or beir_cache_dir()) / name
    if (target / "corpus.jsonl").is_file():
        return target
    if not download:
        raise ConfigError(f"BEIR dataset '{name}' is not downloaded — run 'ragtune data beir {name}' (needs the "
                          f"internet once), or give the dataset's folder")
    _download(name, target, on_progress)
    return target


def _download(name: str, target: Path, on_progress: Callable[[int, int], None] | None) -> None:
    import httpx

    url = os.environ.get("RAGTUNE_BEIR_URL", BEIR_URL).format(name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
                if response.status_code == 404:
                    raise ConfigError(f"there is no BEIR dataset '{name}' at {url} — check the name (e.g. scifact, "
                                      "nfcorpus, fiqa, arguana)")
                response.raise_for_status()
                total = int(response.headers.get("content-length") or 0)
                done = 0
                with archive.open("wb") as out:
                    for block in response.iter_bytes(1 << 20):
                        out.write(block)
                        done += len(block)
                        if on_progress:
                            on_progress(done, total)
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot download BEIR dataset '{name}' from {url} ({exc}) — connect to the internet, "
                              "or download the zip elsewhere and give its unzipped folder") from exc
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.namelist():
                    # A member naming a path outside the folder would write anywhere on disk.
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise ConfigError(f"{url}: the archive holds an unsafe path {member!r} — not extracted")
                zipped.extractall(unpacked)
        except zipfile.BadZipFile as exc:
            raise ConfigError(f"{url} did not give a zip archive ({exc}) — check RAGTUNE_BEIR_URL") from exc
        found = next((p.parent for p in sorted(unpacked.rglob("corpus.jsonl"))), None)
        if found is None:
            raise ConfigError(f"{url}: the archive has no corpus.jsonl — {_LAYOUT_HINT}")
        if target.exists():
            shutil.rmtree(target)
        # One rename publishes the dataset whole: an interrupted download leaves nothing half-written behind.
        found.rename(target)
    log.info("BEIR dataset %s downloaded to %s", name, target)
