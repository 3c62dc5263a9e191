"""Query rewriting: robust parsing of what small models write, caching by (model, prompt), time bounds."""

from __future__ import annotations

import pytest
from scripted_llm import ScriptedLLM

from ragtune.errors import ConfigError
from ragtune.llm.cached import CachedLLM
from ragtune.retrieve.rewrite import (
    QueryRewriter,
    parse_passage,
    parse_queries,
    parse_question,
)

pytestmark = pytest.mark.unit
THIRD = "cancel fees"


class TestParseQueries:
    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            ('["refund policy", "money back rules"]', ["refund policy", "money back rules"]),
            ('```json\n["refund policy", "money back rules",]\n```', ["refund policy", "money back rules"]),
            ("Here you go: ['refund policy', 'money back rules']", ["refund policy", "money back rules"]),
            ('["refund policy", "money back ru', ["refund policy", "money back ru"]),  # cut off mid-string
            ('{"queries": ["refund policy", "money back rules"]}', ["refund policy", "money back rules"]),
            ("1. refund policy\n2) money back rules\n3. cancel fees", ["refund policy", "money back rules", THIRD]),
            ("- refund policy\n* money back rules\n• cancel fees", ["refund policy", "money back rules", THIRD]),
            ("Query 1: refund policy\nQ2: money back rules", ["refund policy", "money back rules"]),
            ("1、退款政策\n2、退钱规则", ["退款政策", "退钱规则"]),
            ("“refund policy”\n\n\n“money back rules”", ["refund policy", "money back rules"]),
        ],
    )
    def test_formats_small_models_write(self, reply: str, expected: list[str]) -> None:
        assert parse_queries(reply, 5) == expected

    def test_drops_echo_duplicates_blanks_and_rambling(self) -> None:
        reply = "1. What is the refund window?\n2. refund window length\n3. REFUND WINDOW LENGTH\n4. ---\n5. "
        reply += "x" * 400
        assert parse_queries(reply, 5, original="What is the refund window?") == ["refund window length"]

    def test_count_is_bounded(self) -> None:
        assert parse_queries("a\nb\nc\nd", 2) == ["a", "b"]
        assert parse_queries("a\nb", 0) == []

    def test_garbage_gives_nothing(self) -> None:
        assert parse_queries("", 3) == []
        assert parse_queries("```\n```", 3) == []
        assert parse_queries("[[[{{{", 3) == []

    def test_passage_and_question(self) -> None:
        assert parse_passage('```\nPassage: "Refunds take 14 days."\n```') == "Refunds take 14 days."
        assert parse_passage("x" * 5000, max_chars=100) == "x" * 100
        reply = "Step-back question: What are refund rules?\nExplanation: ..."
        assert parse_question(reply) == "What are refund rules?"
        assert parse_question("", original="q") == ""


class TestQueryRewriter:
    def test_multi_query_parses_and_caches(self) -> None:
        llm = ScriptedLLM("1. money back rules\n2. cancellation refund")
        rewriter = QueryRewriter(CachedLLM(llm), n_queries=2)
        first = rewriter.rewrite("refund policy", "multi")
        assert first.queries == ["money back rules", "cancellation refund"]
        again = rewriter.rewrite("refund policy", "multi")
        assert again.queries == first.queries
        assert len(llm.calls) == 1, "the second rewrite must come from the cache"
        assert rewriter.client.cache.hits == 1

    def test_hyde_and_stepback(self) -> None:
        hyde = QueryRewriter(CachedLLM(ScriptedLLM("Passage: Refunds take 14 days."))).rewrite("q", "hyde")
        assert hyde.passage == "Refunds take 14 days."
        stepback = QueryRewriter(CachedLLM(ScriptedLLM("What are the refund rules?")))
        step = stepback.rewrite("refund in 14 days?", "stepback")
        assert step.queries == ["What are the refund rules?"]

    def test_none_calls_nothing(self) -> None:
        llm = ScriptedLLM("x")
        assert QueryRewriter(CachedLLM(llm)).rewrite("q", "none").queries == []
        assert llm.calls == []

    def test_failure_falls_back_with_a_reason(self) -> None:
        result = QueryRewriter(CachedLLM(ScriptedLLM(fail=True))).rewrite("q", "multi")
        assert result.queries == []
        assert "server down" in result.error

    def test_empty_reply_is_reported(self) -> None:
        result = QueryRewriter(CachedLLM(ScriptedLLM("```"))).rewrite("q", "hyde")
        assert result.passage == "" and "no passage" in result.error

    def test_condense_uses_history(self) -> None:
        llm = ScriptedLLM("What is the refund window for enterprise plans?")
        history = [{"role": "user", "content": "Tell me about enterprise plans"},
                   {"role": "assistant", "content": "They include support."}]
        assert QueryRewriter(CachedLLM(llm)).condense("and the refund window?", history) == \
            "What is the refund window for enterprise plans?"
        assert QueryRewriter(CachedLLM(llm)).condense("standalone?", []) == "standalone?"

    def test_rejects_bad_settings(self) -> None:
        with pytest.raises(ConfigError, match="unknown rewrite"):
            QueryRewriter(CachedLLM(ScriptedLLM())).rewrite("q", "telepathy")
        with pytest.raises(ConfigError, match="rewrite_queries"):
            QueryRewriter(CachedLLM(ScriptedLLM()), n_queries=0)
