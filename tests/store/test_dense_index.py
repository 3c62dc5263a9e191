"""The local dense index: exact below exact_search_below (whatever order the graph was built in), the graph
above it, ties to the lower id, filters and deletions in both."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.store.hnsw import DenseIndex

pytestmark = pytest.mark.unit


def vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def built(ids: np.ndarray, vecs: np.ndarray, order: np.ndarray, **options: int) -> DenseIndex:
    index = DenseIndex(vecs.shape[1], m=4, ef_construction=8, ef_search=8, **options)
    for part in np.array_split(order, 7):
        index.add(ids[part].tolist(), vecs[part])
    return index


def test_small_indexes_are_exact_whatever_the_build_order() -> None:
    vecs, ids = vectors(3000), np.arange(3000) * 3 + 5
    forward = built(ids, vecs, np.arange(3000))
    shuffled = built(ids, vecs, np.random.default_rng(1).permutation(3000))
    for query in vectors(40, seed=2):
        truth = ids[np.argsort(-(vecs @ query), kind="stable")[:50]]
        for index in (forward, shuffled):
            found, scores = index.search(query, 50)
            assert found.tolist() == truth.tolist()
            assert np.all(np.diff(scores) <= 0)


def test_a_graph_with_a_tiny_candidate_list_misses_neighbours_above_the_threshold() -> None:
    # The same data with exact search switched off: the weak graph (ef 8, M 4) does not find all 50 — the exact
    # path is what made the test above pass.
    vecs, ids = vectors(3000), np.arange(3000)
    graph = built(ids, vecs, np.arange(3000), exact_below=100)
    misses = 0
    for query in vectors(40, seed=2):
        truth = set(np.argsort(-(vecs @ query))[:50].tolist())
        misses += len(truth - set(graph.search(query, 50)[0].tolist()))
    assert misses > 0


def test_ties_go_to_the_lower_id_and_filters_and_deletions_hold() -> None:
    base = vectors(1)[0]
    vecs = np.stack([base] * 4 + list(vectors(20, seed=3)))
    ids = np.array([40, 7, 19, 3] + list(range(100, 120)))
    index = built(ids, vecs, np.arange(len(ids)))
    assert index.search(base, 4)[0].tolist() == [3, 7, 19, 40]
    assert index.search(base, 2, allowed={19, 40, 101})[0].tolist() == [19, 40]
    index.remove([3, 19])
    assert index.search(base, 3)[0].tolist()[:2] == [7, 40]
    index.add([200], base[None, :])
    assert index.search(base, 3)[0].tolist() == [7, 40, 200]


def test_the_exact_matrix_follows_adds_and_removals_without_rereading_the_graph() -> None:
    vecs = vectors(600, seed=5)
    index = built(np.arange(0, 1200, 2)[:300], vecs[:300], np.arange(300))
    index.search(vecs[0], 5)  # builds the matrix
    index.add([1, 3, 5000], vecs[300:303])  # ids below and above the existing ones
    index.remove([0, 2, 4])
    reread = DenseIndex(16, m=4, ef_construction=8, ef_search=8)
    live = {i: v for i, v in zip(np.arange(0, 1200, 2)[:300].tolist() + [1, 3, 5000], vecs[:303], strict=True)
            if i not in (0, 2, 4)}
    reread.add(list(live), np.stack(list(live.values())))
    for query in vectors(20, seed=6):
        assert index.search(query, 10)[0].tolist() == reread.search(query, 10)[0].tolist()
    assert index._matrix is not None and index._matrix[0].tolist() == sorted(live)
