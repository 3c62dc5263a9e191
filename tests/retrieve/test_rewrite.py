"""Query rewriting: robust parsing of what small models write, caching by (model, prompt), time bounds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ragtune.errors import ConfigError
from ragtune.retrieve.rewrite import (
    QueryRewriter,
    RewriteCache,
    parse_passage,
    parse_queries,
    parse_question,
)

pytestmark = pytest.mark.unit
THIRD = "cancel fees"


class ScriptedLLM:
    """Replies with canned text, one piece per word, and counts calls."""

    name = "scripted"

    def __init__(self, reply: str = "", *, delay: float = 0.0, fail: bool = False) -> None:
        self.reply = reply
        self.delay = delay
        self.fail = fail
        self.calls: list[list[dict[str, str]]] = []

    def stream(self, messages: list[dict[str, str]], **params: object) -> Iterator[str]:
        self.calls.append(messages)
        if self.fail:
            raise RuntimeError("server down")
        for word in self.reply.split(" "):
            if self.delay:
                time.sleep(self.delay)
            yield word + " "

    def chat(self, messages: list[dict[str, str]], **params: object) -> str:
        return "".join(self.stream(messages, **params))


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


class TestRewriteCache:
    def test_memory_cache_counts_hits(self) -> None:
        cache = RewriteCache()
        key = RewriteCache.key("m", [{"role": "user", "content": "p"}], {"max_tokens": 8})
        assert cache.get(key) is None
        cache.put(key, "reply")
        assert cache.get(key) == "reply"
        assert (cache.hits, cache.misses) == (1, 1)

    def test_key_depends_on_model_prompt_and_params(self) -> None:
        m = [{"role": "user", "content": "p"}]
        keys = {RewriteCache.key("a", m, {"t": 0}), RewriteCache.key("b", m, {"t": 0}),
                RewriteCache.key("a", [{"role": "user", "content": "q"}], {"t": 0}), RewriteCache.key("a", m, {"t": 1})}
        assert len(keys) == 4

    def test_disk_cache_survives_reopening(self, tmp_path) -> None:
        path = tmp_path / "cache" / "llm.sqlite"
        first = RewriteCache(path)
        first.put("k", "stored reply")
        first.close()
        again = RewriteCache(path)
        assert again.get("k") == "stored reply"
        again.close()


class TestQueryRewriter:
    def test_multi_query_parses_and_caches(self) -> None:
        llm = ScriptedLLM("1. money back rules\n2. cancellation refund")
        rewriter = QueryRewriter(llm, n_queries=2)
        first = rewriter.rewrite("refund policy", "multi")
        assert first.queries == ["money back rules", "cancellation refund"]
        again = rewriter.rewrite("refund policy", "multi")
        assert again.queries == first.queries
        assert len(llm.calls) == 1, "the second rewrite must come from the cache"
        assert rewriter.cache.hits == 1

    def test_hyde_and_stepback(self) -> None:
        assert QueryRewriter(ScriptedLLM("Passage: Refunds take 14 days.")).rewrite("q", "hyde").passage == \
            "Refunds take 14 days."
        step = QueryRewriter(ScriptedLLM("What are the refund rules?")).rewrite("refund in 14 days?", "stepback")
        assert step.queries == ["What are the refund rules?"]

    def test_none_calls_nothing(self) -> None:
        llm = ScriptedLLM("x")
        assert QueryRewriter(llm).rewrite("q", "none").queries == []
        assert llm.calls == []

    def test_failure_falls_back_with_a_reason(self) -> None:
        result = QueryRewriter(ScriptedLLM(fail=True)).rewrite("q", "multi")
        assert result.queries == []
        assert "server down" in result.error

    def test_empty_reply_is_reported(self) -> None:
        result = QueryRewriter(ScriptedLLM("```")).rewrite("q", "hyde")
        assert result.passage == "" and "no passage" in result.error

    def test_time_bound_cuts_generation_and_skips_the_cache(self) -> None:
        llm = ScriptedLLM(" ".join(["word"] * 50), delay=0.02)
        rewriter = QueryRewriter(llm, timeout_s=0.1)
        started = time.perf_counter()
        reply = rewriter.generate("write a lot")
        assert time.perf_counter() - started < 0.6
        assert 0 < reply.count("word") < 50
        rewriter.generate("write a lot")
        assert len(llm.calls) == 2, "a cut-off reply must not be cached"

    def test_condense_uses_history(self) -> None:
        llm = ScriptedLLM("What is the refund window for enterprise plans?")
        history = [{"role": "user", "content": "Tell me about enterprise plans"},
                   {"role": "assistant", "content": "They include support."}]
        assert QueryRewriter(llm).condense("and the refund window?", history) == \
            "What is the refund window for enterprise plans?"
        assert QueryRewriter(llm).condense("standalone?", []) == "standalone?"

    def test_rejects_bad_settings(self) -> None:
        with pytest.raises(ConfigError, match="unknown rewrite"):
            QueryRewriter(ScriptedLLM()).rewrite("q", "telepathy")
        with pytest.raises(ConfigError, match="rewrite_queries"):
            QueryRewriter(ScriptedLLM(), n_queries=0)


class BatchingLLM:
    """A backend with ``chat_many``: echoes each prompt upper-cased, records the batches it was given, and
    fails any batch holding a prompt that contains 'boom'."""

    name = "batching"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def chat_many(self, conversations: list[list[dict[str, str]]], *, batch_size: int, **params: object) -> list[str]:
        prompts = [c[-1]["content"] for c in conversations]
        self.batches.append(prompts)
        if any("boom" in p for p in prompts):
            raise RuntimeError("out of memory")
        return [p.upper() for p in prompts]

    def stream(self, messages: list[dict[str, str]], **params: object) -> Iterator[str]:
        raise AssertionError("a backend with chat_many is only called in batches")


class TestGenerateMany:
    def test_batches_in_order_and_caches_each_reply(self) -> None:
        llm = BatchingLLM()
        rewriter = QueryRewriter(llm)
        prompts = [f"p{i}" for i in range(5)]
        assert rewriter.generate_many(prompts, batch_size=2) == ["P0", "P1", "P2", "P3", "P4"]
        assert llm.batches == [["p0", "p1"], ["p2", "p3"], ["p4"]]
        # Only what is not cached goes to the model; singles and batches share the cache.
        assert rewriter.generate_many(["p3", "new", "p0"], batch_size=2) == ["P3", "NEW", "P0"]
        assert llm.batches[-1] == ["new"]
        assert rewriter.generate("p4") == "P4"

    def test_a_failed_batch_gives_its_error_and_the_rest_goes_on(self) -> None:
        llm = BatchingLLM()
        rewriter = QueryRewriter(llm)
        replies = rewriter.generate_many(["a", "boom", "c"], batch_size=2)
        assert isinstance(replies[0], RuntimeError) and isinstance(replies[1], RuntimeError)
        assert replies[2] == "C"
        # Nothing of the failed batch was cached: a re-run asks again.
        rewriter.generate_many(["a"], batch_size=2)
        assert llm.batches[-1] == ["a"]

    def test_backends_without_batching_are_asked_one_by_one(self) -> None:
        llm = ScriptedLLM("one reply")
        rewriter = QueryRewriter(llm)
        assert rewriter.generate_many(["x", "y"], system="be brief") == ["one reply ", "one reply "]
        assert [c[0]["content"] for c in llm.calls] == ["be brief", "be brief"]
        failing = QueryRewriter(ScriptedLLM(fail=True)).generate_many(["x"])
        assert isinstance(failing[0], RuntimeError) and "server down" in str(failing[0])
        with pytest.raises(ConfigError, match="batch_size"):
            rewriter.generate_many(["x"], batch_size=0)
