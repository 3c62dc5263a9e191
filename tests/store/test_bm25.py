"""Tests for the BM25 index, proven against rank_bm25 and bm25s."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import bm25s
import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from ragtune.errors import StoreError
from ragtune.store.bm25 import VARIANTS, BM25Index, BM25IndexError
from ragtune.store.text import tokenize

pytestmark = pytest.mark.unit

N_DOCS = 300


def _corpus(seed: int = 7) -> tuple[list[list[str]], list[list[str]]]:
    """Zipf-distributed documents (some empty, one term in most docs so robertson idf goes negative)."""
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(400)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    docs = []
    for i in range(N_DOCS):
        doc = rng.choices(vocab, weights, k=rng.randint(0, 80)) if i % 50 else []
        if rng.random() < 0.7:
            doc.append("common")
        docs.append(doc)
    queries = [rng.choices(vocab, weights, k=rng.randint(1, 6)) for _ in range(60)]
    queries += [["common"], ["common", "t3"], ["t399", "t399", "t1"], ["unknown"], ["t5", "unknown"]]
    return docs, queries


DOCS, QUERIES = _corpus()


def _ranking_matches(ids: np.ndarray, scores: np.ndarray, reference: np.ndarray, k: int) -> None:
    """`ids`/`scores` must be the top k of the full `reference` score vector (ties in any order)."""
    positive = np.flatnonzero(reference > 0)
    expected = np.sort(reference[positive])[::-1][:k]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reference[ids], scores, rtol=1e-5, atol=1e-5)
    assert len(set(ids.tolist())) == len(ids)


def _fresh(docs: dict[int, list[str]], **params: object) -> BM25Index:
    index = BM25Index(**params)  # type: ignore[arg-type]
    index.add(list(docs), list(docs.values()))
    return index


def _assert_same_results(a: BM25Index, b: BM25Index, queries: list[list[str]], k: int = 10) -> None:
    for query in queries:
        ids_a, scores_a = a.search(query, k)
        ids_b, scores_b = b.search(query, k)
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-6)


class TestInit:
    def test_defaults(self) -> None:
        index = BM25Index()
        assert (index.k1, index.b, index.variant) == (1.2, 0.75, "lucene")
        assert len(index) == 0

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"k1": -0.1}, "k1 must be >= 0"),
            ({"k1": float("nan")}, "k1 must be >= 0"),
            ({"b": 1.5}, "b must be between 0 and 1"),
            ({"b": -0.1}, "b must be between 0 and 1"),
            ({"variant": "bm25+"}, "variant must be one of"),
        ],
    )
    def test_rejects_invalid_parameters(self, params: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            BM25Index(**params)  # type: ignore[arg-type]

    def test_variants_are_named(self) -> None:
        assert set(VARIANTS) == {"lucene", "robertson"}

    def test_rejects_non_positive_k(self) -> None:
        with pytest.raises(ValueError, match="k must be greater than 0"):
            BM25Index().search(["a"], 0)

    def test_rejects_mismatched_lengths_and_strings(self) -> None:
        with pytest.raises(ValueError, match="same length"):
            BM25Index().add([1, 2], [["a"]])
        with pytest.raises(TypeError, match="lists of tokens"):
            BM25Index().add([1], ["not tokenized"])  # type: ignore[list-item]


class TestParity:
    def test_robertson_equals_rank_bm25_okapi(self) -> None:
        reference = BM25Okapi(DOCS, k1=1.5, b=0.75)
        index = BM25Index(k1=1.5, b=0.75, variant="robertson")
        index.add(range(N_DOCS), DOCS)  # type: ignore[arg-type]
        for query in QUERIES:
            expected = reference.get_scores(query)
            ids, scores = index.search(query, N_DOCS)
            assert set(ids.tolist()) == set(np.flatnonzero(expected > 0).tolist())
            np.testing.assert_allclose(scores, expected[ids], rtol=1e-5, atol=1e-5)
            _ranking_matches(*index.search(query, 10), expected, 10)

    def test_robertson_floor_for_negative_idf(self) -> None:
        reference = BM25Okapi(DOCS, k1=1.5, b=0.75)
        assert reference.idf["common"] == pytest.approx(0.25 * reference.average_idf)
        index = _fresh(dict(enumerate(DOCS)), k1=1.5, b=0.75, variant="robertson")
        ids, scores = index.search(["common"], N_DOCS)
        np.testing.assert_allclose(scores, reference.get_scores(["common"])[ids], rtol=1e-5)

    @pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (1.5, 0.75), (0.9, 0.4), (0.0, 0.0), (2.0, 1.0)])
    def test_lucene_equals_bm25s(self, k1: float, b: float) -> None:
        reference = bm25s.BM25(k1=k1, b=b, method="lucene")
        reference.index(DOCS, show_progress=False)
        index = _fresh(dict(enumerate(DOCS)), k1=k1, b=b)
        for query in QUERIES:
            expected = reference.get_scores(query).astype(np.float64)
            ids, scores = index.search(query, N_DOCS)
            assert set(ids.tolist()) == set(np.flatnonzero(expected > 0).tolist())
            np.testing.assert_allclose(scores, expected[ids], rtol=1e-5, atol=1e-5)
            _ranking_matches(*index.search(query, 10), expected, 10)

    def test_ties_break_by_smaller_id(self) -> None:
        index = _fresh({9: ["x"], 3: ["x"], 5: ["x"], 1: ["y"]})
        ids, scores = index.search(["x"], 2)
        assert ids.tolist() == [3, 5]
        assert scores[0] == scores[1]


class TestIncremental:
    def test_add_remove_equals_fresh_build(self) -> None:
        rng = random.Random(3)
        live: dict[int, list[str]] = {}
        index = BM25Index()
        for step in range(40):
            batch = {rng.randrange(400): DOCS[rng.randrange(N_DOCS)] for _ in range(rng.randint(1, 25))}
            index.add(list(batch), list(batch.values()))
            live.update(batch)
            if step % 3 == 2:
                gone = rng.sample(sorted(live), k=min(len(live), rng.randint(1, 20))) + [10_000]
                index.remove(gone)
                for doc_id in gone:
                    live.pop(doc_id, None)
            assert len(index) == len(live)
        _assert_same_results(index, _fresh(live), QUERIES)
        for doc_id in range(400):
            assert (doc_id in index) == (doc_id in live)

    @pytest.mark.parametrize("variant", ["lucene", "robertson"])
    def test_one_at_a_time_equals_bulk(self, variant: str) -> None:
        index = BM25Index(variant=variant)
        for doc_id, doc in enumerate(DOCS):
            index.add([doc_id], [doc])
        index.remove(range(0, N_DOCS, 3))
        fresh = _fresh({i: d for i, d in enumerate(DOCS) if i % 3}, variant=variant)
        _assert_same_results(index, fresh, QUERIES, k=25)

    def test_removing_everything_empties_the_index(self) -> None:
        index = _fresh(dict(enumerate(DOCS)))
        index.remove(range(N_DOCS))
        assert len(index) == 0
        ids, scores = index.search(["t1"], 5)
        assert len(ids) == len(scores) == 0
        index.add([1], [["t1"]])
        assert index.search(["t1"], 5)[0].tolist() == [1]

    def test_compaction_drops_terms_of_removed_documents(self) -> None:
        index = _fresh({1: ["a", "x"], 2: ["b", "x"], 3: ["b", "c"], 4: ["c"]})
        index.remove([1, 2, 4])
        assert index.search(["a"], 5)[0].tolist() == []
        assert index.search(["x"], 5)[0].tolist() == []
        _assert_same_results(index, _fresh({3: ["b", "c"]}), [["b"], ["c"], ["b", "c", "a"]])

    def test_re_adding_an_id_replaces_it(self) -> None:
        index = _fresh({1: ["apple", "pie"], 2: ["cherry"]})
        index.add([1], [["banana"]])
        assert len(index) == 2
        assert index.search(["apple"], 5)[0].tolist() == []
        assert index.search(["banana"], 5)[0].tolist() == [1]
        _assert_same_results(index, _fresh({1: ["banana"], 2: ["cherry"]}), [["banana"], ["cherry"], ["pie"]])

    def test_duplicate_ids_in_one_batch_keep_the_last(self) -> None:
        index = BM25Index()
        index.add([4, 4, 5], [["old"], ["new"], ["other"]])
        assert len(index) == 2
        assert index.search(["old"], 5)[0].tolist() == []
        assert index.search(["new"], 5)[0].tolist() == [4]

    def test_remove_ignores_unknown_ids(self) -> None:
        index = _fresh({1: ["a"]})
        index.remove([2, 3])
        index.remove([])
        assert len(index) == 1
        assert 1 in index
        assert 2 not in index
        assert "1" not in index


class TestSearch:
    def test_empty_index(self) -> None:
        ids, scores = BM25Index().search(["anything"], 10)
        assert ids.dtype == np.int64
        assert scores.dtype == np.float32
        assert len(ids) == len(scores) == 0

    @pytest.mark.parametrize("query", [[], ["unknown"], ["unknown", "also-unknown"]])
    def test_no_known_terms(self, query: list[str]) -> None:
        ids, scores = _fresh(dict(enumerate(DOCS))).search(query, 10)
        assert len(ids) == len(scores) == 0

    def test_results_are_sorted_and_positive(self) -> None:
        index = _fresh(dict(enumerate(DOCS)))
        for query in QUERIES:
            ids, scores = index.search(query, 15)
            assert ids.dtype == np.int64
            assert scores.dtype == np.float32
            assert len(ids) <= 15
            assert np.all(scores > 0)
            assert np.all(np.diff(scores) <= 0)

    @pytest.mark.parametrize("as_array", [True, False])
    def test_allowed_restricts_to_those_ids(self, as_array: bool) -> None:
        index = _fresh({doc_id + 1000: doc for doc_id, doc in enumerate(DOCS)})
        subset = set(random.Random(1).sample(range(1000, 1000 + N_DOCS), 60)) | {99_999}
        allowed = np.array(sorted(subset)) if as_array else subset
        for query in QUERIES:
            all_ids, all_scores = index.search(query, N_DOCS)
            keep = np.isin(all_ids, list(subset))
            ids, scores = index.search(query, 7, allowed=allowed)
            np.testing.assert_allclose(scores, all_scores[keep][:7])
            assert set(ids.tolist()) <= subset

    def test_allowed_empty_gives_nothing(self) -> None:
        index = _fresh(dict(enumerate(DOCS)))
        assert len(index.search(["t1"], 5, allowed=set())[0]) == 0
        assert len(index.search(["t1"], 5, allowed=np.array([], dtype=np.int64))[0]) == 0

    def test_allowed_respects_removed_documents(self) -> None:
        index = _fresh({1: ["x", "y"], 2: ["x"], 3: ["y"]})
        index.remove([1])
        assert index.search(["x"], 5, allowed={1, 2})[0].tolist() == [2]

    def test_repeated_query_terms_count_twice(self) -> None:
        index = _fresh(dict(enumerate(DOCS)))
        _, once = index.search(["t7"], 3)
        _, twice = index.search(["t7", "t7"], 3)
        np.testing.assert_allclose(twice, 2 * once, rtol=1e-6)

    def test_concurrent_adds_and_searches(self) -> None:
        index = _fresh(dict(enumerate(DOCS)))
        errors: list[BaseException] = []

        def writer() -> None:
            for i in range(50):
                index.add([N_DOCS + i], [["t1", "t2", f"new{i}"]])
                index.remove([i])

        def reader() -> None:
            try:
                for query in QUERIES * 2:
                    index.search(query, 10)
            except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(3))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        live = {i: d for i, d in enumerate(DOCS) if i >= 50} | {N_DOCS + i: ["t1", "t2", f"new{i}"] for i in range(50)}
        _assert_same_results(index, _fresh(live), QUERIES)


class TestAnalyzedText:
    def test_chinese_document_is_found_by_chinese_query(self) -> None:
        texts = ["北京是中华人民共和国的首都。", "上海是一座国际化大都市。", "The capital of France is Paris."]
        index = _fresh({i: tokenize(text) for i, text in enumerate(texts)})
        assert index.search(tokenize("中国的首都是哪里？"), 3)[0].tolist() == [0]
        assert index.search(tokenize("共和国"), 3)[0].tolist() == [0]
        assert index.search(tokenize("国际化都市"), 3)[0].tolist() == [1]

    def test_running_finds_runs(self) -> None:
        index = _fresh({1: tokenize("She runs every morning."), 2: tokenize("He swims.")})
        assert index.search(tokenize("running"), 5)[0].tolist() == [1]

    def test_stopwords_do_not_match(self) -> None:
        index = _fresh({1: tokenize("the cat"), 2: tokenize("a dog")})
        assert len(index.search(tokenize("the a of"), 5)[0]) == 0


class TestPersistence:
    def test_round_trip(self, tmp_path: Path) -> None:
        index = BM25Index(k1=1.5, b=0.6, variant="robertson")
        for start in range(0, N_DOCS, 40):
            index.add(range(start, min(N_DOCS, start + 40)), DOCS[start : start + 40])  # type: ignore[arg-type]
        index.remove(range(0, N_DOCS, 7))
        index.save(tmp_path / "bm25", {"seq": 42, "note": "中文"})
        loaded, meta = BM25Index.load(tmp_path / "bm25")
        assert meta == {"seq": 42, "note": "中文"}
        assert (loaded.k1, loaded.b, loaded.variant) == (1.5, 0.6, "robertson")
        assert len(loaded) == len(index)
        _assert_same_results(index, loaded, QUERIES)

    def test_loaded_index_keeps_changing_and_saving(self, tmp_path: Path) -> None:
        directory = tmp_path / "bm25"
        index = _fresh(dict(enumerate(DOCS[:200])))
        index.save(directory, {"seq": 1})
        (directory / "README.txt").write_text("not ours")
        loaded, _ = BM25Index.load(directory)
        loaded.add(range(200, N_DOCS), DOCS[200:])  # type: ignore[arg-type]
        loaded.remove([0, 1, 2])
        loaded.save(directory, {"seq": 2})
        again, meta = BM25Index.load(directory)
        assert meta == {"seq": 2}
        _assert_same_results(again, _fresh({i: d for i, d in enumerate(DOCS) if i > 2}), QUERIES)
        assert (directory / "README.txt").read_text() == "not ours"
        manifest = json.loads((directory / "manifest.json").read_text())
        expected = {"manifest.json", "README.txt", manifest["state"], manifest["vocab"], *manifest["segments"]}
        assert {path.name for path in directory.iterdir()} == expected

    def test_empty_index_round_trip(self, tmp_path: Path) -> None:
        BM25Index().save(tmp_path, {})
        loaded, meta = BM25Index.load(tmp_path)
        assert len(loaded) == 0
        assert meta == {}
        assert len(loaded.search(["a"], 3)[0]) == 0

    def test_missing_index_raises_store_error(self, tmp_path: Path) -> None:
        with pytest.raises(BM25IndexError, match="no BM25 index"):
            BM25Index.load(tmp_path / "nowhere")
        assert issubclass(BM25IndexError, StoreError)

    @pytest.mark.parametrize("damage", ["manifest", "array", "segment", "state", "vocab"])
    def test_corrupt_index_raises_store_error(self, tmp_path: Path, damage: str) -> None:
        _fresh(dict(enumerate(DOCS))).save(tmp_path, {"seq": 1})
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        segment = tmp_path / manifest["segments"][0]
        if damage == "manifest":
            (tmp_path / "manifest.json").write_text('{"format": ')
        elif damage == "array":
            data = (segment / "docs.npy").read_bytes()
            (segment / "docs.npy").write_bytes(data[: len(data) // 2])
        elif damage == "segment":
            for path in segment.iterdir():
                path.unlink()
            segment.rmdir()
        elif damage == "state":
            (tmp_path / manifest["state"]).write_bytes(b"garbage")
        else:
            (tmp_path / manifest["vocab"]).write_text("[1, 2")
        with pytest.raises(BM25IndexError, match="rebuild"):
            BM25Index.load(tmp_path)
