"""Rerankers and how the retriever composes rewriting, fusion and reranking."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_rewrite import ScriptedLLM

from ragtune.errors import ConfigError
from ragtune.kb import KnowledgeBase
from ragtune.retrieve.rerank import LLMReranker, apply_scores, parse_grade, parse_rerank_spec
from ragtune.types import ChunkMeta, Hit


def _hits(texts: Sequence[str]) -> list[Hit]:
    return [Hit(chunk_id=f"c{i}", document_id=f"d{i}", source=f"s{i}", text=t, score=1.0 / (i + 1),
                meta=ChunkMeta()) for i, t in enumerate(texts)]


class KeywordReranker:
    """Scores a passage by whether it contains a keyword: a stand-in for a model, to test composition."""

    name = "keyword"

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword
        self.seen: list[int] = []

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        self.seen.append(len(texts))
        return np.asarray([float(self.keyword in t.lower()) for t in texts], dtype=np.float32)

    def rerank(self, query: str, hits: list[Hit], top_k: int | None = None) -> list[Hit]:
        return apply_scores(hits, self.score(query, [h.text for h in hits]).tolist(), top_k)


@pytest.mark.unit
class TestRerankLogic:
    def test_apply_scores_orders_stably_and_records_both_scores(self) -> None:
        hits = apply_scores(_hits(["a", "b", "c", "d"]), [0.1, 0.9, 0.1, 0.5])
        assert [h.text for h in hits] == ["b", "d", "a", "c"]  # ties keep first-stage order
        assert hits[0].scores["rerank"] == pytest.approx(0.9) and hits[0].scores["retrieval"] == pytest.approx(0.5)
        assert [h.scores["rerank_rank"] for h in hits] == [1, 2, 3, 4]
        assert len(apply_scores(_hits(["a", "b"]), [1, 2], top_k=1)) == 1

    @pytest.mark.parametrize(("reply", "grade"), [("3", 3), ("Score: 2/3", 2), ("**1**", 1), ("relevance 0.", 0),
                                                  ("I think 7", 0), ("", 0), ("2.5", 2)])
    def test_parse_grade(self, reply: str, grade: float) -> None:
        assert parse_grade(reply) == grade

    def test_parse_spec(self) -> None:
        assert parse_rerank_spec(None) == ("none", "")
        assert parse_rerank_spec("none") == ("none", "")
        assert parse_rerank_spec("cross-encoder:/models/rr") == ("cross-encoder", "/models/rr")
        assert parse_rerank_spec("llm") == ("llm", "")
        with pytest.raises(ConfigError, match="needs a model"):
            parse_rerank_spec("cross-encoder")
        with pytest.raises(ConfigError, match="unknown reranker"):
            parse_rerank_spec("colbert:x")

    def test_llm_reranker_uses_yes_no_logits_when_the_backend_has_them(self) -> None:
        class YesNo:
            name = "yesno"

            def __init__(self) -> None:
                self.batches: list[int] = []

            def score_yes_no(self, prompts: list[str], *, batch_size: int = 8) -> list[float]:
                self.batches.append(batch_size)
                return [2.0 if "fourteen days" in p else -1.0 for p in prompts]

        llm = YesNo()
        hits = LLMReranker(llm, batch_size=4).rerank("refund time?", _hits(["gym hours", "refunds in fourteen days"]))
        assert hits[0].text == "refunds in fourteen days" and llm.batches == [4]

    def test_llm_reranker_grades_with_chat_backends_and_survives_failures(self) -> None:
        class Grader(ScriptedLLM):
            def chat(self, messages, **params):  # type: ignore[no-untyped-def]
                content = messages[0]["content"]
                if "broken" in content:
                    raise RuntimeError("timeout")
                return "Score: 3" if "fourteen days" in content else "0"

        hits = LLMReranker(Grader(), workers=2).rerank("refund?", _hits(["broken", "gym", "refunds in fourteen days"]))
        assert hits[0].text == "refunds in fourteen days"
        assert {h.text: h.scores["rerank"] for h in hits}["broken"] == 0.0

    def test_missing_cross_encoder_directory_is_a_clear_error(self, tmp_path: Path) -> None:
        from ragtune.retrieve.rerank import CrossEncoderReranker

        with pytest.raises(ConfigError, match="ragtune train reranker"):
            CrossEncoderReranker(tmp_path / "nothing-here")


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    base = KnowledgeBase.open(tmp_path_factory.mktemp("compose") / "kb", create=True, embedder=embedder)
    base.ingest([Path(__file__).resolve().parents[2] / "examples"])
    yield base
    base.close()


@pytest.mark.integration
class TestComposition:
    @pytest.mark.parametrize("query", ["how do I rotate API keys", "年假有多少天", "refund window enterprise"])
    def test_hybrid_fuses_the_dense_and_bm25_rankings_by_their_scores(self, kb: KnowledgeBase, query: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        from ragtune.retrieve.fusion import reciprocal_rank_fusion, score_fusion

        s = kb.settings
        assert s.fusion == "dbsf"
        dense = kb.store.dense_search(kb.embedder.encode_queries([query])[0], s.candidates, None)
        sparse = kb.store.sparse_search(query, s.candidates, None)
        expected = score_fusion([dense, sparse], weights=[s.dense_weight, s.sparse_weight])[:5]
        hits = kb.retrieve(query, 5).hits
        assert [h.fusion for h in hits] == ["dbsf"] * len(hits)
        assert [h.score for h in hits] == pytest.approx([score for _, score in expected], abs=1e-9)
        assert [h.scores.get("dense_rank") for h in hits] == [
            next((r for r, (i, _) in enumerate(dense, 1) if i == cid), None) for cid, _ in expected]
        # The same rankings under fusion = "rrf": ranks only.
        monkeypatch.setattr(kb, "settings", s.model_copy(update={"fusion": "rrf"}))
        rrf = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in sparse]],
                                     weights=[s.dense_weight, s.sparse_weight], k=s.rrf_k)[:5]
        assert [h.score for h in kb.retrieve(query, 5).hits] == pytest.approx([score for _, score in rrf])

    def test_multi_query_retrieves_what_only_a_paraphrase_finds(self, kb: KnowledgeBase) -> None:
        query = "zebra quokka"  # matches nothing by itself
        plain = kb.retrieve(query, 3, mode="sparse")
        assert not any("refunds" in h.source for h in plain.hits)
        kb.llm = ScriptedLLM("1. refund window enterprise plans\n2. zebra quokka")
        try:
            result = kb.retrieve(query, 3, mode="sparse", rewrite="multi")
        finally:
            kb.llm = None
        assert result.queries == [query, "refund window enterprise plans"]
        assert "refunds" in result.hits[0].source
        assert result.timings["rewrite"] >= 0

    def test_hyde_moves_the_dense_query_toward_the_passage(self, kb: KnowledgeBase) -> None:
        query = "what is the number?"
        kb.llm = ScriptedLLM("Enterprise customers can request a refund within 45 days of purchase.")
        try:
            hyde = kb.retrieve(query, 1, mode="dense", rewrite="hyde")
        finally:
            kb.llm = None
        assert "refunds" in hyde.hits[0].source
        assert hyde.queries == [query]

    def test_failed_rewrite_still_searches_and_says_why(self, kb: KnowledgeBase) -> None:
        kb.llm = ScriptedLLM(fail=True)
        try:
            result = kb.retrieve("refund window", 3, mode="sparse", rewrite="stepback")
        finally:
            kb.llm = None
        assert result.hits and "server down" in result.notes[0]

    def test_reranker_reorders_candidates_and_keeps_the_tail(self, kb: KnowledgeBase) -> None:
        retriever = kb.retriever(rerank=False)
        first = retriever.search("how many days", 8, mode="sparse").hits
        n = len(first)
        assert n >= 6
        keyword = next(w for w in first[n - 3].text.lower().split() if len(w) > 4 and w not in first[0].text.lower())
        retriever.reranker = KeywordReranker(keyword)
        retriever.rerank_candidates = n - 2
        retriever.rerank_fusion = 0.0  # the reranker's order alone
        result = retriever.search("how many days", 8, mode="sparse")
        assert retriever.reranker.seen == [n - 2]
        assert keyword in result.hits[0].text.lower()
        assert [h.chunk_id for h in result.hits[n - 2 :]] == [h.chunk_id for h in first[n - 2 :]]
        assert "rerank" in result.timings and "rerank" in result.hits[0].scores
        off = retriever.search("how many days", 8, mode="sparse", rerank=False)
        assert [h.chunk_id for h in off.hits] == [h.chunk_id for h in first]

    def test_rerank_fusion_blends_in_the_first_stage(self, kb: KnowledgeBase) -> None:
        retriever = kb.retriever(rerank=False)
        first = retriever.search("refund", 5, mode="sparse").hits
        last_word = next(w for w in first[-1].text.lower().split() if len(w) > 5)
        retriever.reranker = KeywordReranker(last_word)
        retriever.rerank_fusion = 100.0  # the first stage dominates
        fused = retriever.search("refund", 5, mode="sparse").hits
        assert fused[0].chunk_id == first[0].chunk_id

    def test_rerank_asked_for_without_a_reranker_is_an_error(self, kb: KnowledgeBase) -> None:
        with pytest.raises(ConfigError, match="no reranker"):
            kb.retrieve("refund", 3, mode="sparse", rerank=True)
