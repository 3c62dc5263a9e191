"""Loading BEIR-format datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.evaluate.beir import BeirDataset, load_beir

SCIFACT = Path("/work/shared/data/scifact")


def write_beir(
    directory: Path,
    *,
    splits: dict[str, str] | None = None,
    corpus: list[dict] | None = None,
    queries: list[dict] | None = None,
) -> Path:
    corpus = (
        corpus
        if corpus is not None
        else [
            {"_id": "d1", "title": "Alpha", "text": "alpha text"},
            {"_id": "d2", "text": "no title here"},
            {"_id": 3, "title": "Numeric id", "text": "three"},
        ]
    )
    queries = (
        queries
        if queries is not None
        else [
            {"_id": "q1", "text": "what is alpha"},
            {"_id": "q2", "text": "numeric"},
            {"_id": "q3", "text": "only in train"},
        ]
    )
    splits = (
        splits
        if splits is not None
        else {
            "test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\t3\t2\n",
            "train": "query-id\tcorpus-id\tscore\nq3\td2\t1\n",
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus), encoding="utf-8")
    (directory / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries), encoding="utf-8")
    (directory / "qrels").mkdir(exist_ok=True)
    for split, text in splits.items():
        (directory / "qrels" / f"{split}.tsv").write_text(text, encoding="utf-8")
    return directory


@pytest.mark.unit
class TestLoadBeir:
    def test_loads_split(self, tmp_path: Path) -> None:
        dataset = load_beir(write_beir(tmp_path))
        assert isinstance(dataset, BeirDataset)
        assert dataset.corpus == {
            "d1": {"title": "Alpha", "text": "alpha text"},
            "d2": {"title": "", "text": "no title here"},
            "3": {"title": "Numeric id", "text": "three"},
        }
        assert dataset.queries == {"q1": "what is alpha", "q2": "numeric"}  # q3 is judged only in train
        assert dataset.qrels == {"q1": {"d1": 1, "d2": 0}, "q2": {"3": 2}}

    def test_other_split(self, tmp_path: Path) -> None:
        dataset = load_beir(write_beir(tmp_path), split="train")
        assert dataset.queries == {"q3": "only in train"}
        assert dataset.qrels == {"q3": {"d2": 1}}

    def test_accepts_str_path_blank_lines_and_no_header(self, tmp_path: Path) -> None:
        write_beir(tmp_path, splits={"test": "q1\td1\t1\n\nq2\t3\t1\r\n"})
        dataset = load_beir(str(tmp_path))  # type: ignore[arg-type]
        assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"3": 1}}

    def test_missing_split_names_available_ones(self, tmp_path: Path) -> None:
        write_beir(tmp_path, splits={"train": "query-id\tcorpus-id\tscore\nq3\td2\t1\n", "dev": "q1\td1\t1\n"})
        with pytest.raises(ConfigError) as excinfo:
            load_beir(tmp_path)
        assert str(excinfo.value) == f"qrels/test.tsv not found in {tmp_path} — available splits: dev, train"

    def test_missing_qrels_folder(self, tmp_path: Path) -> None:
        write_beir(tmp_path, splits={})
        (tmp_path / "qrels").rmdir()
        with pytest.raises(ConfigError, match=r"qrels/test.tsv not found in .* — available splits: none"):
            load_beir(tmp_path)

    @pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
    def test_missing_file(self, tmp_path: Path, name: str) -> None:
        (write_beir(tmp_path) / name).unlink()
        with pytest.raises(ConfigError, match=f"{name} not found in {tmp_path} — a BEIR dataset folder holds"):
            load_beir(tmp_path)

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="is not a directory"):
            load_beir(tmp_path / "nope")

    def test_bad_qrels_line(self, tmp_path: Path) -> None:
        write_beir(tmp_path, splits={"test": "query-id\tcorpus-id\tscore\nq1 d1 1\n"})
        with pytest.raises(ConfigError, match=r"test.tsv line 2: expected 3 tab-separated fields"):
            load_beir(tmp_path)

    def test_bad_qrels_score(self, tmp_path: Path) -> None:
        write_beir(tmp_path, splits={"test": "query-id\tcorpus-id\tscore\nq1\td1\thigh\n"})
        with pytest.raises(ConfigError, match=r"test.tsv line 2: score must be an integer, got 'high'"):
            load_beir(tmp_path)

    def test_bad_json(self, tmp_path: Path) -> None:
        write_beir(tmp_path)
        with (tmp_path / "corpus.jsonl").open("a", encoding="utf-8") as corpus:
            corpus.write("{not json\n")
        with pytest.raises(ConfigError, match=r"corpus.jsonl line 4: not valid JSON"):
            load_beir(tmp_path)

    def test_row_without_id(self, tmp_path: Path) -> None:
        write_beir(tmp_path, queries=[{"text": "no id"}])
        with pytest.raises(ConfigError, match=r"queries.jsonl line 1: expected a JSON object with an '_id' field"):
            load_beir(tmp_path)

    def test_judged_query_without_text(self, tmp_path: Path) -> None:
        write_beir(tmp_path, queries=[{"_id": "q1", "text": "what is alpha"}])
        with pytest.raises(ConfigError, match=r"judges 1 queries that are not in queries.jsonl \(e.g. 'q2'\)"):
            load_beir(tmp_path)


@pytest.mark.integration
@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"{SCIFACT} not present")
def test_scifact_train() -> None:
    dataset = load_beir(SCIFACT, split="train")
    assert len(dataset.corpus) == 5183
    assert len(dataset.queries) == len(dataset.qrels) == 809
    assert sum(len(judged) for judged in dataset.qrels.values()) == 919
    assert all(doc_id in dataset.corpus for judged in dataset.qrels.values() for doc_id in judged)
    assert dataset.queries["0"] == "0-dimensional biomaterials lack inductive properties."
    assert dataset.qrels["0"] == {"31715818": 1}
