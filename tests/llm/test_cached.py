"""The cached LLM client: reply cache keys and persistence, time bounds, batched generation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from scripted_llm import ScriptedLLM

from ragtune.errors import ConfigError
from ragtune.llm.cached import CachedLLM, LLMCache

pytestmark = pytest.mark.unit


class TestLLMCache:
    def test_memory_cache_counts_hits(self) -> None:
        cache = LLMCache()
        key = LLMCache.key("m", [{"role": "user", "content": "p"}], {"max_tokens": 8})
        assert cache.get(key) is None
        cache.put(key, "reply")
        assert cache.get(key) == "reply"
        assert (cache.hits, cache.misses) == (1, 1)

    def test_key_depends_on_model_prompt_and_params(self) -> None:
        m = [{"role": "user", "content": "p"}]
        keys = {LLMCache.key("a", m, {"t": 0}), LLMCache.key("b", m, {"t": 0}),
                LLMCache.key("a", [{"role": "user", "content": "q"}], {"t": 0}), LLMCache.key("a", m, {"t": 1})}
        assert len(keys) == 4

    def test_disk_cache_survives_reopening(self, tmp_path) -> None:
        path = tmp_path / "cache" / "llm.sqlite"
        first = LLMCache(path)
        first.put("k", "stored reply")
        first.close()
        again = LLMCache(path)
        assert again.get("k") == "stored reply"
        again.close()

    def test_time_bound_cuts_generation_and_skips_the_cache(self) -> None:
        llm = ScriptedLLM(" ".join(["word"] * 50), delay=0.02)
        client = CachedLLM(llm, timeout_s=0.1)
        started = time.perf_counter()
        reply = client.generate("write a lot")
        assert time.perf_counter() - started < 0.6
        assert 0 < reply.count("word") < 50
        client.generate("write a lot")
        assert len(llm.calls) == 2, "a cut-off reply must not be cached"


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
        client = CachedLLM(llm)
        prompts = [f"p{i}" for i in range(5)]
        assert client.generate_many(prompts, batch_size=2) == ["P0", "P1", "P2", "P3", "P4"]
        assert llm.batches == [["p0", "p1"], ["p2", "p3"], ["p4"]]
        # Only what is not cached goes to the model; singles and batches share the cache.
        assert client.generate_many(["p3", "new", "p0"], batch_size=2) == ["P3", "NEW", "P0"]
        assert llm.batches[-1] == ["new"]
        assert client.generate("p4") == "P4"

    def test_a_failed_batch_gives_its_error_and_the_rest_goes_on(self) -> None:
        llm = BatchingLLM()
        client = CachedLLM(llm)
        replies = client.generate_many(["a", "boom", "c"], batch_size=2)
        assert isinstance(replies[0], RuntimeError) and isinstance(replies[1], RuntimeError)
        assert replies[2] == "C"
        # Nothing of the failed batch was cached: a re-run asks again.
        client.generate_many(["a"], batch_size=2)
        assert llm.batches[-1] == ["a"]

    def test_backends_without_batching_are_asked_one_by_one(self) -> None:
        llm = ScriptedLLM("one reply")
        client = CachedLLM(llm)
        assert client.generate_many(["x", "y"], system="be brief") == ["one reply ", "one reply "]
        assert [c[0]["content"] for c in llm.calls] == ["be brief", "be brief"]
        failing = CachedLLM(ScriptedLLM(fail=True)).generate_many(["x"])
        assert isinstance(failing[0], RuntimeError) and "server down" in str(failing[0])
        with pytest.raises(ConfigError, match="batch_size"):
            client.generate_many(["x"], batch_size=0)
