"""The LLM claim judge: robust JSON parsing, fallback to the default judge, caching, the JSON schema sent to
OpenAI-compatible servers (and dropped for servers that refuse it), and a real weak model behind a real server."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from openai_server import local_llm_handler
from scripted_llm import ScriptedLLM

from ragtune.evaluate import evaluate_rag
from ragtune.llm.cached import CachedLLM, LLMCache
from ragtune.llm.openai import OpenAICompatibleLLM
from ragtune.rag.llm_judge import LLMJudge, parse_json_reply

CONTEXTS = ["Enterprise customers have a refund window of 45 days.", "Passwords must be 14 characters long."]
CLAIMS = ["Enterprise customers have a refund window of 45 days.", "Refunds are paid in Bitcoin."]


@pytest.mark.unit
class TestParseJsonReply:
    @pytest.mark.parametrize(("reply", "expected"), [
        ('{"a": 1}', {"a": 1}),
        ('Sure! Here is the JSON:\n```json\n{"a": [1, 2,],}\n```\nHope that helps.', {"a": [1, 2]}),
        ("{'verdicts': [{'statement': 1, 'supported': True, 'source': None}]}",
         {"verdicts": [{"statement": 1, "supported": True, "source": None}]}),
        ('The answer: [{"statement": 2, "supported": false}] and more text', [{"statement": 2, "supported": False}]),
        ("no json at all", None),
        ("", None),
    ])
    def test_cases(self, reply: str, expected: Any) -> None:
        assert parse_json_reply(reply) == expected


def verdict_reply(*verdicts: dict[str, Any]) -> str:
    return json.dumps({"verdicts": list(verdicts)})


@pytest.mark.unit
class TestLLMJudge:
    def test_verdicts_map_to_claims_sources_and_reasons(self) -> None:
        llm = ScriptedLLM(verdict_reply({"statement": 2, "supported": False, "source": None, "reason": "not said"},
                                        {"statement": 1, "supported": "yes", "source": "[1]", "reason": ""}))
        checks = LLMJudge(CachedLLM(llm)).check(CLAIMS, CONTEXTS, question="refunds?")
        assert [(c.claim, c.supported, c.source, c.reason) for c in checks] == [
            (CLAIMS[0], True, 0, ""), (CLAIMS[1], False, None, "not said")]
        prompt = llm.calls[0][-1]["content"]
        assert "[2] Passwords must be 14 characters long." in prompt and "2. Refunds are paid in Bitcoin." in prompt

    def test_an_unparseable_reply_falls_back_to_the_default_judge(self) -> None:
        llm = ScriptedLLM("I think the first one is fine but I am not sure about the second.")
        checks = LLMJudge(CachedLLM(llm)).check(CLAIMS, CONTEXTS)
        assert [c.supported for c in checks] == [True, False]
        assert "default judge" in checks[1].reason

    def test_a_partial_reply_is_completed_by_the_default_judge(self) -> None:
        llm = ScriptedLLM(verdict_reply({"statement": 1, "supported": True, "source": 1, "reason": ""}))
        checks = LLMJudge(CachedLLM(llm)).check(CLAIMS, CONTEXTS)
        assert [c.supported for c in checks] == [True, False] and "default judge" in checks[1].reason

    def test_replies_are_cached_per_prompt(self) -> None:
        llm = ScriptedLLM(verdict_reply({"statement": 1, "supported": True, "source": 1, "reason": ""}))
        judge = LLMJudge(CachedLLM(llm, cache=LLMCache()))
        first = judge.check(CLAIMS[:1], CONTEXTS)
        assert judge.check(CLAIMS[:1], CONTEXTS) == first and len(llm.calls) == 1

    def test_questions_for_answer_relevancy(self) -> None:
        llm = ScriptedLLM('{"questions": ["What is the refund window?", "How long are refunds?"], '
                          '"noncommittal": 0}')
        assert LLMJudge(CachedLLM(llm)).questions_for("45 days.") == (
            ["What is the refund window?", "How long are refunds?"], False)
        assert LLMJudge(CachedLLM(ScriptedLLM("nonsense"))).questions_for("45 days.") == ([], False)


class Unit:
    """Every text the same direction, except those given (so the similarities are exact)."""

    name = "unit"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def encode_queries(self, texts: list[str]) -> Any:
        import numpy as np

        return np.array([self.table.get(t, [1.0, 0.0]) for t in texts], dtype=np.float32)

    encode_documents = encode_queries


@pytest.mark.unit
def test_answer_relevancy_the_ragas_way_with_an_llm_judge() -> None:
    rows = [{"user_input": "What is the refund window?", "response": "45 days [1].", "retrieved_contexts": CONTEXTS}]
    asked = ScriptedLLM('{"questions": ["How long is the refund window?", "What is it?"], "noncommittal": false}')
    embedder = Unit({"What is it?": [0.6, 0.8]})
    result = evaluate_rag(rows, metrics=["answer_relevancy"], judge=LLMJudge(CachedLLM(asked)), embedder=embedder)
    assert result["items"][0]["answer_relevancy"] == pytest.approx((1.0 + 0.6) / 2)
    assert result["items"][0]["explanation"]["answer_relevancy"]["questions"][1] == "What is it?"
    evasive = LLMJudge(CachedLLM(ScriptedLLM('{"questions": ["What?"], "noncommittal": true}')))
    assert evaluate_rag(rows, metrics=["answer_relevancy"], judge=evasive, embedder=embedder)["items"][0][
        "answer_relevancy"] == 0.0


class RecordingJudgeServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint answering every chat with a supported verdict for each numbered statement
    (streamed, as the cached client asks); records the request bodies."""

    bodies: list[dict[str, Any]] = []
    refuse_schema = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        if self.refuse_schema and "response_format" in body:
            self.reply(400, "application/json", json.dumps({"error": {"message": "response_format unsupported"}}))
            return
        prompt = body["messages"][-1]["content"]
        statements = prompt.split("Statements:\n")[1].split("\n\n")[0].splitlines()
        reply = verdict_reply(*({"statement": i, "supported": True, "source": 1, "reason": ""}
                                for i in range(1, len(statements) + 1)))
        event = json.dumps({"choices": [{"index": 0, "delta": {"content": reply}}]})
        self.reply(200, "text/event-stream", f"data: {event}\n\ndata: [DONE]\n\n")

    def reply(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.mark.integration
class TestOverHttp:
    def judge_for(self, serve: Callable[..., str], handler: type[BaseHTTPRequestHandler]) -> LLMJudge:
        return LLMJudge(CachedLLM(OpenAICompatibleLLM("judge-model", base_url=serve(handler), max_retries=0)))

    def test_the_json_schema_reaches_the_server(self, serve: Callable[..., str]) -> None:
        class Handler(RecordingJudgeServer):
            bodies: list[dict[str, Any]] = []

        checks = self.judge_for(serve, Handler).check(CLAIMS, CONTEXTS)
        assert [c.supported for c in checks] == [True, True]
        body = Handler.bodies[0]
        assert body["temperature"] == 0.0
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"]["required"] == ["verdicts"]

    def test_a_server_without_structured_output_gets_plain_requests(self, serve: Callable[..., str]) -> None:
        class Handler(RecordingJudgeServer):
            bodies: list[dict[str, Any]] = []
            refuse_schema = True

        judge = self.judge_for(serve, Handler)
        assert [c.supported for c in judge.check(CLAIMS, CONTEXTS)] == [True, True]
        assert judge.check(CLAIMS[1:], CONTEXTS)[0].supported
        assert ["response_format" in b for b in Handler.bodies] == [True, False, False]

    @pytest.mark.slow
    def test_a_small_real_model_never_breaks_a_run(self, serve: Callable[..., str]) -> None:
        # SmolLM2-135M rarely writes the JSON asked for: the run must still give a number for every row.
        from ragtune.llm import LocalLLM

        remote = OpenAICompatibleLLM("smollm2", base_url=serve(local_llm_handler(LocalLLM())))
        judge = LLMJudge(CachedLLM(remote, max_tokens=48), max_tokens=48)
        rows = [{"user_input": "What is the refund window?", "retrieved_contexts": CONTEXTS,
                 "response": "Enterprise customers have a refund window of 45 days [1]."},
                {"user_input": "What is the refund window?", "retrieved_contexts": CONTEXTS,
                 "response": "Refunds are paid in Bitcoin within 3 days."}]
        result = evaluate_rag(rows, metrics=["faithfulness"], judge=judge)
        values = [item["faithfulness"] for item in result["items"]]
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in values)
        assert result["config"]["judge"] == "llm:smollm2"
