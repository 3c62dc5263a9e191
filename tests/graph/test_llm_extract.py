"""Entities from an LLM on top of the rules (graph_extractor = "llm"): parsing the model's list, what it adds, what a
failure leaves, and a KB whose graph is built through a real OpenAI-compatible HTTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from openai_server import local_llm_handler

from ragtune.graph import EXTRACTOR_VERSION, entity_key
from ragtune.graph.llm_extract import LLMEntityExtractor, parse_entities
from ragtune.kb import KnowledgeBase

SHIP = ("Maren Holt flew to Tromsø on Monday. The orbital relay she designs goes up in spring; "
        "the relay team meets at the old harbour office.")
ZH = "王芳下周去青岛，和星火项目的团队见面。"


class TestParse:
    pytestmark = pytest.mark.unit

    def test_lines_bullets_and_types(self):
        reply = "- Maren Holt | person\n2. Tromsø | place\n* orbital relay | product\nold harbour office | venue\n"
        assert parse_entities(reply, SHIP) == [("Maren Holt", "person"), ("Tromsø", "place"),
                                               ("orbital relay", "thing"), ("old harbour office", "name")]

    def test_names_the_text_does_not_hold_and_copied_sentences_are_dropped(self):
        # A small model invents, or copies the text: only names the chunk states become entities.
        assert parse_entities("Maren Holt | person\nNASA | org\n\n | person", SHIP) == [("Maren Holt", "person")]
        copied = f"{ZH} | name\n王芳 | person\nThe orbital relay she designs goes up in spring | thing"
        assert parse_entities(copied, ZH + SHIP) == [("王芳", "person")]

    def test_chinese_types(self):
        assert parse_entities("王芳 | 人物\n青岛 | 地点\n星火项目 | 项目", ZH) == [
            ("王芳", "person"), ("青岛", "place"), ("星火项目", "thing")]


class FakeModel:
    """Names what a capable model would in the texts it is sent; fails on texts holding 'FAIL'."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, prompts: Any) -> list[str | Exception]:
        self.prompts.extend(prompts)
        return [RuntimeError("server error 500") if "FAIL" in p else "orbital relay | thing\nMaren Holt | person"
                for p in prompts]


class TestExtractor:
    pytestmark = pytest.mark.integration  # spaCy's real pipeline

    def test_the_model_adds_to_the_rules_and_types_their_bare_names(self, extractor):
        model = FakeModel()
        llm = LLMEntityExtractor(model, "capable-model")
        rules = {m.key: m for m in extractor.extract([SHIP])[0]}
        found = {m.key: m for m in llm.extract([SHIP])[0]}
        relay = entity_key("orbital relay", "thing")
        assert relay not in rules and found[relay].kind == "thing"  # lower case: the tagger does not see a name
        assert set(rules) < set(found)
        assert found[entity_key("Maren Holt", "person")].kind == "person"
        assert llm.version == f"{EXTRACTOR_VERSION}+llm:capable-model" != extractor.version
        # The prompt is in the language the chunk is read in (the rules' own test: jieba for Chinese).
        llm.extract([ZH])
        assert model.prompts[0].startswith("List the named entities") and model.prompts[-1].startswith("列出")

    def test_a_failed_reply_keeps_the_rules_mentions_and_questions_cost_no_call(self, extractor, caplog):
        model = FakeModel()
        llm = LLMEntityExtractor(model, "capable-model")
        text = SHIP + " FAIL"
        with caplog.at_level("WARNING"):
            found = llm.extract([text])[0]
        assert {m.key for m in found} == {m.key for m in extractor.extract([text])[0]}
        assert "1 of 1 chunks" in caplog.text
        calls = len(model.prompts)
        assert llm.extract_one("Who designs the orbital relay?") == extractor.extract_one(
            "Who designs the orbital relay?")
        assert len(model.prompts) == calls


class EntityModel:
    """Stands in for a capable model behind the HTTP server: lists the lower-case device names of the text it is
    sent (what a tagger misses) as things."""

    def __init__(self) -> None:
        self.calls = 0

    def reply(self, messages: list[dict[str, str]]) -> str:
        self.calls += 1
        text = messages[-1]["content"].split("Text:\n", 1)[-1]
        return "\n".join(f"{m} | thing" for m in dict.fromkeys(re.findall(r"\b(?:orbital|harbour) relay\b", text)))

    def chat(self, messages: list[dict[str, str]], **_: Any) -> str:
        return self.reply(messages)

    def stream(self, messages: list[dict[str, str]], **_: Any) -> Iterator[str]:
        yield self.reply(messages)


@pytest.mark.integration
@pytest.mark.slow
def test_a_graph_built_with_an_llm_served_over_http_holds_its_entities(tmp_path, serve, embedder):
    model = EntityModel()
    url = serve(local_llm_handler(model))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "relay.md").write_text(f"# Relay\n\n{SHIP}\n", encoding="utf-8")
    (docs / "harbour.md").write_text("# Harbour\n\nThe harbour relay was rebuilt by Ivo Lund in 2024.\n",
                                     encoding="utf-8")
    settings = {"graph": True, "graph_extractor": "llm", "llm": "openai", "llm_model": "capable", "llm_base_url": url}
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder, **settings) as kb:
        assert kb.ingest(docs).ok
        stats = kb.graph.stats()
        # Without the recogniser the rules type nothing as a 'thing': these came from the model.
        things = {e["name"].lower() for e in kb.graph.entities(top=100, kind="thing")}
    assert things == {"orbital relay", "harbour relay"} and model.calls >= 2
    assert stats["extractor"] == stats["current_extractor"] == f"{EXTRACTOR_VERSION}+llm:capable"
    # A second build reads the KB's LLM cache: no new calls.
    calls = model.calls
    with KnowledgeBase.open(tmp_path / "kb", **settings) as kb:
        kb.build_graph(rebuild=True)
        assert {e["name"].lower() for e in kb.graph.entities(top=100, kind="thing")} == things
    assert model.calls == calls
