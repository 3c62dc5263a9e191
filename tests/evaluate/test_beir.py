"""Loading BEIR-format datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.evaluate.beir import BeirDataset, load_beir, resolve_beir

pytestmark = pytest.mark.unit

#: A small BEIR-format dataset kept in the repository (see tests/fixtures/beir/README.md).
HANDBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "beir" / "handbook"


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


def test_the_repository_sample_loads_per_split() -> None:
    dataset = load_beir(HANDBOOK, split="test")
    assert len(dataset.corpus) == 12
    assert len(dataset.queries) == len(dataset.qrels) == 5
    assert sum(len(judged) for judged in dataset.qrels.values()) == 6
    assert all(doc_id in dataset.corpus for judged in dataset.qrels.values() for doc_id in judged)
    assert dataset.queries["q1"] == "how often must api keys be rotated"
    assert dataset.qrels["q3"] == {"d05": 2}
    assert dataset.corpus["d01"]["title"] == "Key rotation"
    train = load_beir(HANDBOOK, split="train")
    assert set(train.queries) == {"q6", "q7"}


class TestResolve:
    """Finding a dataset by folder or by name, and downloading it once from a real HTTP server."""

    @staticmethod
    def zipped(tmp_path: Path, members: dict[str, bytes]) -> bytes:
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        return buffer.getvalue()

    @pytest.fixture()
    def server(self, serve, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
        """An HTTP server on 127.0.0.1 serving zips by dataset name, with RAGTUNE_BEIR_URL pointing at it."""
        from http.server import BaseHTTPRequestHandler

        files: dict[str, bytes] = {}
        requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                body = files.get(name)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        base = serve(Handler).removesuffix("/v1")
        monkeypatch.setenv("RAGTUNE_BEIR_URL", base + "/datasets/{name}.zip")
        monkeypatch.setenv("RAGTUNE_DATA_CACHE", str(tmp_path / "cache"))
        handbook = {f"handbook/{p.relative_to(HANDBOOK).as_posix()}": p.read_bytes()
                    for p in HANDBOOK.rglob("*") if p.is_file()}
        files["handbook.zip"] = self.zipped(tmp_path, handbook)
        files["evil.zip"] = self.zipped(tmp_path, {"../evil/corpus.jsonl": b"{}"})
        files["broken.zip"] = b"not a zip"
        return requests

    def test_a_folder_is_used_as_it_is(self) -> None:
        assert resolve_beir(HANDBOOK) == HANDBOOK
        assert resolve_beir(str(HANDBOOK)) == HANDBOOK

    def test_a_name_is_downloaded_once_then_found_in_the_cache(self, server, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="'handbook' is not downloaded — run 'ragtune data beir handbook'"):
            resolve_beir("handbook")
        seen: list[tuple[int, int]] = []
        folder = resolve_beir("handbook", download=True, on_progress=lambda done, total: seen.append((done, total)))
        assert folder == tmp_path / "cache" / "beir" / "handbook"
        assert load_beir(folder).qrels == load_beir(HANDBOOK).qrels
        assert seen and seen[-1][0] == seen[-1][1] > 0
        assert resolve_beir("handbook") == folder and resolve_beir("handbook", download=True) == folder
        assert server == ["/datasets/handbook.zip"], "a cached dataset is not downloaded again"
        assert [p.name for p in folder.parent.iterdir()] == ["handbook"], "no temporary files are left behind"

    def test_bad_names_and_archives_are_named(self, server) -> None:
        with pytest.raises(ConfigError, match="there is no BEIR dataset 'nosuch'"):
            resolve_beir("nosuch", download=True)
        with pytest.raises(ConfigError, match="unsafe path '../evil/corpus.jsonl'"):
            resolve_beir("evil", download=True)
        with pytest.raises(ConfigError, match="did not give a zip archive"):
            resolve_beir("broken", download=True)
        with pytest.raises(ConfigError, match="give a BEIR dataset folder or a dataset name"):
            resolve_beir("no/such/folder")

    def test_no_network_says_what_to_do(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("RAGTUNE_BEIR_URL", "http://127.0.0.1:9/{name}.zip")  # nothing listens on port 9
        with pytest.raises(ConfigError, match="cannot download BEIR dataset 'scifact' .* connect to the internet"):
            resolve_beir("scifact", download=True, cache_dir=tmp_path)
