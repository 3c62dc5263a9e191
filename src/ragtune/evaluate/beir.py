"""Load a dataset in BEIR layout: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.jsonl import read_jsonl

_LAYOUT_HINT = "a BEIR dataset folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"


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
