"""Reciprocal rank fusion against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from ragtune.errors import ConfigError
from ragtune.retrieve.fusion import document_fusion, fuse, reciprocal_rank_fusion, score_fusion

pytestmark = pytest.mark.unit


def ids(fused: list[tuple[str, float]]) -> list[str]:
    return [doc_id for doc_id, _ in fused]


def scored(rankings: list[list[str]]) -> list[list[tuple[str, float]]]:
    """Rankings with falling scores (RRF reads only the order)."""
    return [[(i, 1.0 / n) for n, i in enumerate(ranking, 1)] for ranking in rankings]


class TestReciprocalRankFusion:
    def test_two_rankings_hand_computed(self) -> None:
        # k = 60, equal weights:
        #   a: 1/61                 = 0.016393
        #   b: 1/62 + 1/61          = 0.016129 + 0.016393 = 0.032522
        #   c: 1/63 + 1/62          = 0.015873 + 0.016129 = 0.032002
        #   d:        1/63          = 0.015873
        fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]])
        assert ids(fused) == ["b", "c", "a", "d"]
        expected = {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 63 + 1 / 62, "d": 1 / 63}
        for doc_id, score in fused:
            assert score == pytest.approx(expected[doc_id], abs=1e-15)

    def test_k_changes_scores(self) -> None:
        # k = 0: a = 1/1 + 1/3 = 1.3333, b = 1/2 + 1/2 = 1.0, c = 1/3 + 1/1 = 1.3333
        fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "a"]], k=0))
        assert fused == pytest.approx({"a": 4 / 3, "b": 1.0, "c": 4 / 3})

    def test_weighted_scores_hand_computed(self) -> None:
        # weights (2, 1), k = 60:
        #   a: 2/61 + 1/63 = 0.032787 + 0.015873 = 0.048660
        #   b: 2/62 + 1/62 = 3/62                 = 0.048387
        #   c: 2/63 + 1/61 = 0.031746 + 0.016393 = 0.048139
        fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "a"]], weights=[2, 1])
        assert ids(fused) == ["a", "b", "c"]
        assert dict(fused) == pytest.approx({"a": 2 / 61 + 1 / 63, "b": 3 / 62, "c": 2 / 63 + 1 / 61})

    def test_weights_change_the_order(self) -> None:
        # Guards against weights being silently ignored (as once in LlamaIndex's fusion retriever).
        first, second = ["a", "b", "c", "d"], ["d", "c", "b", "a"]
        assert ids(reciprocal_rank_fusion([first, second], weights=[1, 0])) == first
        assert ids(reciprocal_rank_fusion([first, second], weights=[0, 1])) == second
        favour_first = ids(reciprocal_rank_fusion([first, second], weights=[2, 1]))
        favour_second = ids(reciprocal_rank_fusion([first, second], weights=[1, 2]))
        assert favour_first == first
        assert favour_second == second
        assert favour_first != favour_second

    def test_weights_scale_invariant(self) -> None:
        # Only the ratio of weights matters for the order.
        rankings = [["a", "b", "c"], ["c", "a", "b"]]
        assert ids(reciprocal_rank_fusion(rankings, weights=[1, 3])) == ids(
            reciprocal_rank_fusion(rankings, weights=[0.5, 1.5])
        )

    def test_zero_weight_ranking_adds_no_ids(self) -> None:
        # "z" appears only in the switched-off ranking, so it is not in the result at all.
        fused = reciprocal_rank_fusion([["a", "b"], ["z", "b"]], weights=[1, 0])
        assert fused == [("a", pytest.approx(1 / 61)), ("b", pytest.approx(1 / 62))]

    def test_absent_ids_contribute_nothing(self) -> None:
        # x only in the first ranking: 1/61; y in both: 1/62 + 1/61.
        fused = dict(reciprocal_rank_fusion([["x", "y"], ["y"]]))
        assert fused == pytest.approx({"x": 1 / 61, "y": 1 / 62 + 1 / 61})

    def test_duplicate_counts_at_first_rank_only(self) -> None:
        # a at rank 1 only (not 1/61 + 1/62); b keeps its position, rank 3: 1/63.
        fused = dict(reciprocal_rank_fusion([["a", "a", "b"]]))
        assert fused == pytest.approx({"a": 1 / 61, "b": 1 / 63})

    def test_ties_break_by_best_rank(self) -> None:
        # weights (2, 1), k = 0:
        #   p: 2/1 = 2.0
        #   a: 2/2 = 1.0 (best rank 2, appears before b)
        #   b: 1/1 = 1.0 (best rank 1)
        # a and b tie exactly; b's better rank wins over a's earlier appearance.
        fused = reciprocal_rank_fusion([["p", "a"], ["b"]], weights=[2, 1], k=0)
        assert fused == [("p", 2.0), ("b", 1.0), ("a", 1.0)]

    def test_ties_break_by_first_appearance(self) -> None:
        # Every id holds ranks {1, 2, 3} once: equal scores and best rank 1, so first appearance decides.
        fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]])
        assert ids(fused) == ["a", "b", "c"]
        assert len({score for _, score in fused}) == 1

    def test_deterministic_for_symmetric_input(self) -> None:
        # a: 1/61 + 1/62, b: 1/62 + 1/61 — exactly equal; a appears first.
        assert ids(reciprocal_rank_fusion([["a", "b"], ["b", "a"]])) == ["a", "b"]
        assert ids(reciprocal_rank_fusion([["b", "a"], ["a", "b"]])) == ["b", "a"]

    @pytest.mark.parametrize("rankings", [[], [[]], [[], []]])
    def test_empty(self, rankings: list[list[str]]) -> None:
        assert reciprocal_rank_fusion(rankings) == []

    def test_one_empty_ranking(self) -> None:
        assert reciprocal_rank_fusion([[], ["a"]]) == [("a", pytest.approx(1 / 61))]

    def test_single_ranking_keeps_order(self) -> None:
        assert ids(reciprocal_rank_fusion([["c", "a", "b"]])) == ["c", "a", "b"]


class TestValidation:
    def test_negative_k(self) -> None:
        with pytest.raises(ConfigError, match="k must be >= 0"):
            reciprocal_rank_fusion([["a"]], k=-1)

    def test_weights_length(self) -> None:
        with pytest.raises(ConfigError, match="weights has 3 values but there are 2 rankings"):
            reciprocal_rank_fusion([["a"], ["b"]], weights=[1, 1, 1])

    def test_negative_weight(self) -> None:
        with pytest.raises(ConfigError, match=r"weights must be >= 0, got -1 at index 1"):
            reciprocal_rank_fusion([["a"], ["b"]], weights=[1, -1])

    def test_non_finite_weight(self) -> None:
        with pytest.raises(ConfigError, match="weights must be finite"):
            reciprocal_rank_fusion([["a"], ["b"]], weights=[1, float("nan")])

    def test_weights_sum_to_zero(self) -> None:
        with pytest.raises(ConfigError, match="weights must not sum to zero"):
            reciprocal_rank_fusion([["a"], ["b"]], weights=[0, 0])

    def test_string_instead_of_rankings(self) -> None:
        with pytest.raises(ConfigError, match=r"rankings\[0\] is a string"):
            reciprocal_rank_fusion(["abc"])  # type: ignore[list-item]


class TestDocumentFusion:
    def test_a_document_found_through_two_chunks_gets_both_credits(self) -> None:
        # Dense ranks y1 then x1; BM25 finds document X through another chunk, x2.
        # Chunk RRF (k=60): y1 = 1/61, x2 = 1/61, x1 = 1/62 → y1, x2, x1 (ties by first appearance).
        # Documents: Y = 1/61 (dense 1); X = 1/62 (dense 2) + 1/61 (BM25 1).
        # document_weight 1: y1 = 2/61, x2 = 1/61 + 1/62 + 1/61, x1 = 1/62 + 1/62 + 1/61 → x2, x1, y1.
        rankings = [["y1", "x1"], ["x2"]]
        document_of = {"x1": "X", "x2": "X", "y1": "Y"}
        assert ids(reciprocal_rank_fusion(rankings)) == ["y1", "x2", "x1"]
        fused = dict(document_fusion(scored(rankings), document_of, method="rrf", document_weight=1.0))
        assert list(fused) == ["x2", "x1", "y1"]
        assert fused["y1"] == pytest.approx(2 / 61)
        assert fused["x2"] == pytest.approx(2 / 61 + 1 / 62) and fused["x1"] == pytest.approx(1 / 61 + 2 / 62)

    def test_weight_zero_is_plain_rrf_and_unknown_ids_are_their_own_document(self) -> None:
        rankings = [["a", "b", "c"], ["c", "b"]]
        plain = reciprocal_rank_fusion(rankings)
        assert document_fusion(scored(rankings), {}, method="rrf", document_weight=0.0) == plain
        # Without documents every chunk is its own: the order is chunk RRF's, the scores (1 + w) times.
        fused = document_fusion(scored(rankings), {}, method="rrf", document_weight=0.5)
        assert ids(fused) == ids(plain)
        assert all(score == pytest.approx(1.5 * p) for (_, score), (_, p) in zip(fused, plain, strict=True))

    def test_retriever_weights_apply_to_documents_too(self) -> None:
        # Dense weight 2: doc D (dense rank 1) beats doc S (sparse rank 1).
        fused = document_fusion(scored([["d1"], ["s1"]]), {"d1": "D", "s1": "S"}, method="rrf", weights=[2.0, 1.0],
                                document_weight=1.0)
        assert ids(fused) == ["d1", "s1"]

    @pytest.mark.parametrize("weight", [-1.0, float("inf"), float("nan")])
    def test_bad_document_weight_is_rejected(self, weight: float) -> None:
        with pytest.raises(ConfigError, match="document_weight"):
            document_fusion(scored([["a"]]), {}, document_weight=weight)


class TestScoreFusion:
    def test_margins_count_where_rrf_hears_only_the_order(self) -> None:
        # BM25 puts "b" far ahead of everything; dense has "a" first by a hair. RRF ties them (each is first
        # once, second once), DBSF follows the clear winner.
        dense = [("a", 0.61), ("b", 0.60), ("c", 0.30), ("d", 0.29)]
        sparse = [("b", 30.0), ("a", 9.0), ("c", 8.5), ("d", 8.0)]
        rrf = dict(fuse([dense, sparse], method="rrf", k=60))
        assert rrf["a"] == pytest.approx(rrf["b"])
        assert ids(score_fusion([dense, sparse]))[0] == "b"

    def test_normalisation_is_mean_minus_three_sigma_over_six_sigma(self) -> None:
        ranking = [("x", 3.0), ("y", 1.0)]  # mean 2, sigma 1: x -> (3 - (2 - 3)) / 6, y -> (1 + 1) / 6
        fused = dict(score_fusion([ranking], weights=[2.0]))
        assert fused["x"] == pytest.approx(2 * 4 / 6) and fused["y"] == pytest.approx(2 * 2 / 6)

    def test_scale_free_absent_ids_get_nothing_and_equal_scores_give_one(self) -> None:
        small = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
        large = [(i, s * 1000 + 7) for i, s in small]  # the same spread on another scale
        a, b = score_fusion([small]), score_fusion([large])
        assert ids(a) == ids(b) and [s for _, s in a] == pytest.approx([s for _, s in b])
        fused = dict(score_fusion([small, [("z", 5.0)]]))
        assert fused["z"] == 1.0 and fused["c"] == pytest.approx((0.1 - 0.5 + 3 * math.sqrt(0.32 / 3)) /
                                                                 (6 * math.sqrt(0.32 / 3)))

    def test_weights_switch_rankings_off_and_ties_are_deterministic(self) -> None:
        first, second = [("a", 2.0), ("b", 1.0)], [("c", 2.0), ("d", 1.0)]
        assert ids(score_fusion([first, second], weights=[1, 0])) == ["a", "b"]
        assert ids(score_fusion([first, second])) == ["a", "c", "b", "d"]  # equal scores: best rank, then order
        with pytest.raises(ConfigError, match="weights must not sum to zero"):
            score_fusion([first, second], weights=[0, 0])

    def test_document_fusion_with_dbsf_credits_a_document_found_twice(self) -> None:
        rankings = [[("y1", 0.9), ("x1", 0.8), ("w1", 0.1)], [("x2", 12.0), ("v1", 1.0)]]
        document_of = {"x1": "X", "x2": "X", "y1": "Y", "w1": "W", "v1": "V"}
        plain = ids(fuse(rankings, method="dbsf"))
        both = ids(document_fusion(rankings, document_of, method="dbsf", document_weight=1.0))
        assert plain.index("x1") > plain.index("y1") and both.index("x1") < both.index("y1")

    def test_unknown_method_names_the_choices(self) -> None:
        with pytest.raises(ConfigError, match="unknown fusion 'sum' — one of dbsf, rrf"):
            fuse([[("a", 1.0)]], method="sum")
