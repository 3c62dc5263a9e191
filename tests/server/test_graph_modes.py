"""Graph and auto retrieval over HTTP: KB search with the route and each hit's path, and chat with mode auto."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import openai
import pytest
from harness import RunningServer, running_server

from ragtune.kb import KnowledgeBase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "What is the refund window for enterprise plans?"


@pytest.fixture(scope="module")
def graph_live(tmp_path_factory, handbook_root, embedder, fake_llm_url) -> Iterator[RunningServer]:
    """The handbook KB with its knowledge graph built, plus a second KB without one."""
    root = tmp_path_factory.mktemp("graph-kbs")
    shutil.copytree(handbook_root, root, dirs_exist_ok=True)
    shutil.copytree(handbook_root / "handbook", root / "other")
    with KnowledgeBase.open(root / "handbook", embedder=embedder) as kb:
        kb.build_graph()
    dated = tmp_path_factory.mktemp("dated") / "20260514_1930.txt"  # dated by its file name
    dated.write_text("WolfgangSchulz: Trattoria Roma at eight? They make fresh pasta.\nLiHua: Perfect, see you there.")
    with KnowledgeBase.open(root / "other", embedder=embedder) as kb:
        assert kb.ingest(dated).ok
    yield from running_server(root, embedder, fake_llm_url)


def test_search_modes_graph_and_auto(graph_live):
    with graph_live.client("admin") as http:
        found = http.post("/v1/kbs/handbook/search", json={"query": QUESTION, "mode": "graph", "k": 3})
        assert found.status_code == 200, found.text
        assert found.json()["mode"] == "graph" and found.json()["hits"]
        routed = http.post("/v1/kbs/handbook/search", json={"query": QUESTION, "mode": "auto"}).json()
        assert routed["route"]["decision"] in ("hybrid", "graph", "decompose")
        assert {"refuse", "reason", "signals", "steps"} <= routed["route"].keys()
        assert "refund" in routed["hits"][0]["text"].lower()
        off_topic = http.post("/v1/kbs/handbook/search", json={"query": "Who won the 1930 football world cup?",
                                                                "mode": "auto"}).json()
        assert off_topic["route"]["refuse"] is True
        no_graph = http.post("/v1/kbs/other/search", json={"query": QUESTION, "mode": "graph"})
        assert no_graph.status_code == 400 and no_graph.json()["error"]["code"] == "invalid_mode"
        assert "graph build" in no_graph.json()["error"]["message"]
        assert http.post("/v1/kbs/other/search", json={"query": QUESTION, "mode": "auto"}).status_code == 200
        bad = http.post("/v1/kbs/handbook/search", json={"query": QUESTION, "mode": "walk"})
        assert bad.status_code == 422


def test_chat_with_mode_auto(graph_live):
    """The answer says how its sources were found: mode auto's route, in the response and the stream's last chunk."""
    client = openai.OpenAI(base_url=f"{graph_live.url}/v1", api_key=graph_live.keys["reader"], max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]
    completion = client.chat.completions.create(model="kb:handbook", messages=messages, extra_body={"mode": "auto"})
    assert "45" in completion.choices[0].message.content and completion.model_extra["refused"] is False
    retrieval = completion.model_extra["retrieval"]
    assert retrieval["mode"] == "auto" and retrieval["queries"] == [QUESTION]
    assert retrieval["route"]["decision"] in ("hybrid", "graph", "decompose") and retrieval["route"]["steps"]
    assert retrieval["route"]["refuse"] is False and retrieval["route"]["signals"]["best_dense"] is not None
    chunks = list(client.chat.completions.create(model="kb:handbook", messages=messages, stream=True,
                                                 extra_body={"mode": "auto"}))
    assert chunks[-1].model_extra["retrieval"]["route"] == retrieval["route"]
    plain = client.chat.completions.create(model="kb:handbook", messages=messages)
    assert plain.model_extra["retrieval"]["mode"] == "hybrid" and "route" not in plain.model_extra["retrieval"]


def test_search_says_which_date_it_ranked(graph_live):
    with graph_live.client("admin") as http:
        found = http.post("/v1/kbs/other/search", json={"query": "Where are we eating on 20260514?", "k": 3}).json()
        assert found["dates"] == ["2026-05-14 (20260514)"]
        assert found["hits"][0]["metadata"]["created_at"] == "2026-05-14T19:30"
        assert "dates" not in http.post("/v1/kbs/other/search", json={"query": QUESTION}).json()
