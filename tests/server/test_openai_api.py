"""The OpenAI-compatible API driven by the official openai client against the running server."""

from __future__ import annotations

import json

import openai
import pytest

from ragtune.feedback import export_feedback

pytestmark = pytest.mark.integration

QUESTION = "What is the refund window for enterprise plans?"


@pytest.fixture()
def client(live):
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.keys["reader"], max_retries=0)


def test_models_list_the_knowledge_bases_the_key_can_read(client, live):
    ids = [m.id for m in client.models.list()]
    assert "kb:handbook" in ids and "fake-extractive" in ids
    other = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.keys["other_reader"], max_retries=0)
    assert "kb:handbook" not in [m.id for m in other.models.list()]


def test_a_kb_model_answers_with_cited_sources(client):
    completion = client.chat.completions.create(model="kb:handbook", messages=[{"role": "user", "content": QUESTION}])
    text = completion.choices[0].message.content
    assert "45" in text and "[1]" in text
    extra = completion.model_extra
    assert extra["refused"] is False and extra["answer_id"]
    sources = extra["sources"]
    assert sources[0]["name"] == "handbook/refunds.md" or sources[0]["name"].endswith("refunds.md")
    assert sources[0]["cited"] and "45" in sources[0]["snippet"]
    assert not sources[0]["name"].startswith("/")  # never the server's path
    assert extra["citations"][0]["number"] == 1


def test_streaming_sends_only_verified_text_and_sources_in_the_last_one(client):
    stream = client.chat.completions.create(
        model="kb:handbook", messages=[{"role": "user", "content": QUESTION}], stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert text == last.model_extra["answer"] and "45" in text and "[1]" in text
    assert last.model_extra["sources"][0]["cited"] and last.model_extra["mode"] == "generative"
    assert all("sources" not in c.model_extra for c in chunks[:-1])
    whole = client.chat.completions.create(model="kb:handbook", messages=[{"role": "user", "content": QUESTION}])
    assert whole.choices[0].message.content == text


@pytest.mark.parametrize("question", ["What is the capital of Peru?", "病假超过几天需要医院证明？"])
def test_stream_and_non_stream_agree_on_refusals_and_quotes(client, question):
    messages = [{"role": "user", "content": question}]
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="kb:handbook", messages=messages, stream=True))
    whole = client.chat.completions.create(model="kb:handbook", messages=messages)
    assert streamed == whole.choices[0].message.content == whole.model_extra["answer"]


def test_an_extractive_answer_is_a_cited_quote_with_its_documents_sections(client):
    completion = client.chat.completions.create(
        model="kb:handbook", messages=[{"role": "user", "content": QUESTION}],
        extra_body={"answer_mode": "extractive"})
    extra = completion.model_extra
    assert extra["mode"] == "extractive" and not extra["refused"]
    assert completion.choices[0].message.content == (
        "“Enterprise customers have a refund window of 45 days from the invoice date.” [1]")
    first = extra["sources"][0]
    assert first["cited"] and first["name"].endswith("refunds.md")
    assert "Refund policy › Enterprise plans" in first["sections"] and len(first["chunk_ids"]) >= 2
    assert first["snippet"] == "Enterprise customers have a refund window of 45 days from the invoice date."
    names = [s["name"] for s in extra["sources"]]
    assert len(names) == len(set(names))  # one numbered source per document


def test_questions_outside_the_knowledge_base_are_refused_with_the_closest_sources(client):
    completion = client.chat.completions.create(
        model="kb:handbook", messages=[{"role": "user", "content": "What is the capital of Peru?"}])
    assert completion.model_extra["refused"] is True
    assert "does not contain" in completion.choices[0].message.content


def test_a_filter_in_the_request_restricts_the_sources(client):
    completion = client.chat.completions.create(
        model="kb:handbook", messages=[{"role": "user", "content": QUESTION}],
        extra_body={"filter": {"source_type": "txt"}})
    assert all(s["name"].endswith(".txt") for s in completion.model_extra["sources"])


def test_the_configured_model_answers_directly(client):
    completion = client.chat.completions.create(
        model="fake-extractive",
        messages=[{"role": "user", "content": "Question: hi\n\nSources:\n[1] Hello there, friend.\n\nQuestion: hi"}])
    assert completion.choices[0].message.content == "Hello there, friend [1]."
    assert "sources" not in (completion.model_extra or {})
    chunks = list(client.chat.completions.create(model="fake-extractive", messages=[{"role": "user", "content": "x"}],
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "I don't know."


def test_embeddings_use_the_knowledge_bases_embedder(client, embedder):
    result = client.embeddings.create(model="kb:handbook", input=["refund window", "年假"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == embedder.dim
    expected = embedder.encode_documents(["refund window"])[0]
    assert abs(sum(a * b for a, b in zip(result.data[0].embedding, expected, strict=True)) - 1) < 1e-4


def test_feedback_is_stored_with_the_answer_and_exported_as_jsonl(client, live, tmp_path):
    completion = client.chat.completions.create(model="kb:handbook", messages=[{"role": "user", "content": QUESTION}])
    answer_id = completion.model_extra["answer_id"]
    with live.client("reader") as http:
        ok = http.post("/v1/feedback", json={"answer_id": answer_id, "rating": "down",
                                             "corrected_answer": "45 days for enterprise plans [1].",
                                             "comment": "say the plan"})
        assert ok.status_code == 201 and ok.json()["kb"] == "handbook"
        assert http.post("/v1/feedback", json={"answer_id": answer_id, "rating": "up"}).status_code == 201
        missing = http.post("/v1/feedback", json={"answer_id": "nope", "rating": "up"})
        assert missing.status_code == 404 and "answer_id" in missing.json()["error"]["message"]
        bad = http.post("/v1/feedback", json={"answer_id": answer_id, "rating": "meh"})
        assert bad.status_code == 422
    out = tmp_path / "feedback.jsonl"
    assert export_feedback(live.root / "handbook", out) >= 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [line for line in lines if line["answer_id"] == answer_id]
    assert mine[0]["rating"] == "down" and mine[0]["corrected_answer"].startswith("45 days")
    assert mine[0]["question"] == QUESTION and "45" in mine[0]["answer"] and mine[0]["contexts"]
    assert mine[1]["rating"] == "up" and "corrected_answer" not in mine[1]
    assert set(mine[0]) == {"question", "answer", "rating", "corrected_answer", "comment", "contexts", "answer_id",
                            "created_at", "cited"}
    # The cited sources point into the contexts the answer was given (what `data feedback-pairs` reads).
    assert all(1 <= c["number"] <= len(mine[0]["contexts"]) and c["chunk_id"] for c in mine[0]["cited"])
