"""OpenAI-compatible routes: chat completions (``kb:NAME`` answers from a knowledge base, with sources),
models and embeddings."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ragtune.errors import ConfigError, FilterError, LLMError, RagtuneError
from ragtune.kb import KnowledgeBase
from ragtune.rag import answer_json
from ragtune.rag.pipeline import token_usage
from ragtune.server.auth import authorize
from ragtune.server.errors import ApiError
from ragtune.server.state import Key, ServerState, State
from ragtune.store.filters import validate_filter
from ragtune.structured import StructuredOutputError, check_schema, generate_structured, json_writer
from ragtune.types import Answer, Hit

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

KB_PREFIX = "kb:"
MAX_TOKENS = 4096


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str = Field(max_length=100_000)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class JsonSchemaFormat(BaseModel):
    """OpenAI's ``response_format.json_schema``."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field("response", max_length=64)
    json_schema: dict[str, Any] = Field(alias="schema", description="A JSON Schema (Draft 2020-12).")
    strict: bool | None = None
    description: str | None = Field(None, max_length=2000)


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: plain text, any JSON object, or JSON that a schema validates."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None

    def schema_or_none(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "object"}
        if self.json_schema is None:
            raise ApiError(400, "response_format of type json_schema needs a json_schema with a schema",
                           code="invalid_response_format")
        return self.json_schema.json_schema


class ChatRequest(BaseModel):
    """OpenAI's chat request; ``filter``, ``k`` and ``mode`` are ragtune extras for ``kb:NAME`` models."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200, examples=["kb:handbook"])
    messages: list[ChatMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**31)
    filter: dict[str, Any] | None = Field(None, description="Metadata filter (kb: models), see the filter language.")
    k: int | None = Field(None, ge=1, le=20, description="Sources given to the model (kb: models).")
    mode: Literal["hybrid", "dense", "sparse", "graph", "auto"] = Field(
        "hybrid", description="Retrieval (kb: models): graph fuses a walk of the KB's knowledge graph; auto lets the "
        "router pick.")
    response_format: ResponseFormat | None = Field(
        None, description="JSON output that a schema validates (OpenAI's shape); invalid replies are retried.")
    retries: int = Field(2, ge=0, le=5, description="With response_format: times an invalid reply is sent back.")
    answer_mode: Literal["auto", "generative", "extractive"] | None = Field(
        None, description="How kb: models answer (default: the knowledge base's answer_mode setting).")


class EmbeddingRequest(BaseModel):
    model: str = Field(min_length=1, max_length=200, examples=["kb:handbook"])
    input: str | list[str] = Field(max_length=256)
    encoding_format: Literal["float", "base64"] = "float"


def source_json(kb_name: str, kb: KnowledgeBase, hit: Hit, number: int, cited: set[int]) -> dict[str, Any]:
    """A source as clients see it: the document's display name (never the server's path), page and snippet."""
    return answer_json.source_json(hit, number, cited=number in cited, name=display_name(kb, hit.source)) | {
        "url": f"/v1/kbs/{kb_name}/documents/{hit.document_id}"}


def display_name(kb: KnowledgeBase, uri: str) -> str:
    path = Path(uri)
    for base in (kb.path / "files", kb.path):
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path.name


def answer_extras(kb_name: str, kb: KnowledgeBase, answer: Answer) -> dict[str, Any]:
    """The answer fields a kb: completion carries beside OpenAI's (the vocabulary of the CLI's --json)."""
    extras = answer_json.answer_json(answer, name=lambda uri: display_name(kb, uri))
    del extras["model"]  # OpenAI's "model" is the one asked for (kb:NAME), not the LLM that wrote the answer
    for source in extras["sources"]:
        source["url"] = f"/v1/kbs/{kb_name}/documents/{source['document_id']}"
    return extras


@router.get("/models", summary="Knowledge bases (as kb:NAME) and the pass-through model")
def list_models(state: State, key: Key) -> dict[str, Any]:
    created = int(time.time())
    data = [{"id": f"{KB_PREFIX}{name}", "object": "model", "created": created, "owned_by": "ragtune"}
            for name in state.kbs.names() if key.allows(name, "reader")]
    data.append({"id": state.model_id, "object": "model", "created": created, "owned_by": "ragtune"})
    return {"object": "list", "data": data}


@router.post(
    "/chat/completions",
    summary="Chat: kb:NAME answers from a knowledge base with sources; the pass-through model answers directly",
    description="For `kb:NAME` models the response carries ragtune extras: `sources` (numbered documents with "
    "their sections, page and best snippet, whether cited), `citations`, `mode` (generative, extractive or "
    "refusal), `removed_claims` (sentences verification dropped, with the reason), `retrieval` (the mode, queries "
    "and, for mode auto, the router's route), `answer_id` (for POST "
    "/v1/feedback), `refused`. Streamed `delta.content` carries only verified text: joined, it is exactly the "
    "answer, refusals included. The extras come in the last chunk (the one with `finish_reason`). Any other "
    "model name than those GET /v1/models lists is a 404.",
)
def chat_completions(body: ChatRequest, state: State, key: Key) -> Any:
    if body.model.startswith(KB_PREFIX):
        return _kb_chat(body, state, key, body.model[len(KB_PREFIX):])
    authorize(key, None, "reader")
    if body.model not in (state.model_id, state.llm.name if state.llm is not None else state.model_id):
        raise ApiError(404, f"no model {body.model!r} here — use 'kb:NAME' to answer from a knowledge base, or "
                       f"{state.model_id!r} for the model itself (GET /v1/models lists them)", code="model_not_found")
    return _passthrough(body, state)


def _kb_chat(body: ChatRequest, state: ServerState, key: Any, name: str) -> Any:
    authorize(key, name, "reader")
    kb = state.kbs.get(name)
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    if messages[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's question", code="invalid_messages")
    try:
        spec = validate_filter(body.filter)
    except FilterError as exc:
        raise ApiError(400, str(exc), code="invalid_filter") from None
    history = [m for m in messages[:-1] if m["role"] != "system"]
    options: dict[str, Any] = {"history": history, "mode": body.mode, "filter": spec, "k": body.k,
                               "temperature": body.temperature or 0.0, "answer_mode": body.answer_mode}
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    schema = body.response_format.schema_or_none() if body.response_format else None
    if schema is not None:
        return _kb_structured(body, state, key, name, kb, messages[-1]["content"], schema, spec, completion_id,
                              created)
    # The key's access groups bound retrieval; the answer is in the audit log before it is returned.
    events = kb.ask_stream(messages[-1]["content"], groups=key.groups, actor=key.actor,
                           max_new_tokens=body.max_tokens, **options)
    if not body.stream:
        answer = None
        try:
            for event in events:
                if event.type == "answer":
                    answer = event.answer
        except RagtuneError as exc:
            raise _generation_error(exc) from None
        assert answer is not None
        _record(state, name, answer)
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                         "finish_reason": "stop"}],
            "usage": _usage(answer.usage),
            **answer_extras(name, kb, answer),
        }

    try:
        # Retrieval and the first token happen before the response starts, so their errors get a status code.
        first = next(events)
    except RagtuneError as exc:
        raise _generation_error(exc) from None

    def stream() -> Iterator[str]:
        yield _sse(_chunk(completion_id, created, body.model, {"role": "assistant", "content": ""}))
        try:
            for event in itertools.chain([first], events):
                if event.type == "token":
                    yield _sse(_chunk(completion_id, created, body.model, {"content": event.text}))
                elif event.answer is not None:
                    _record(state, name, event.answer)
                    final = _chunk(completion_id, created, body.model, {}, "stop")
                    yield _sse({**final, "usage": _usage(event.answer.usage), **answer_extras(name, kb, event.answer)})
        except RagtuneError as exc:
            log.warning("streamed answer failed: %s", exc)
            error = _generation_error(exc)
            yield _sse({"error": {"message": error.message, "type": error.type, "code": error.code}})
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _kb_structured(
    body: ChatRequest, state: ServerState, key: Any, name: str, kb: KnowledgeBase, question: str,
    schema: dict[str, Any], spec: dict[str, Any] | None, completion_id: str, created: int,
) -> Any:
    """A kb: chat answered as JSON the schema validates; ``field_sources`` maps each field to its sources."""
    try:
        answer = kb.ask_structured(question, schema, groups=key.groups, actor=key.actor, retries=body.retries,
                                   mode=body.mode, filter=spec, k=body.k, max_new_tokens=body.max_tokens)
    except StructuredOutputError as exc:
        raise ApiError(422, str(exc), "invalid_request_error", "schema_validation_failed") from None
    except RagtuneError as exc:
        raise _generation_error(exc) from None
    content = json.dumps(answer.data, ensure_ascii=False)
    extras = {"refused": answer.refused, "grounded": not answer.refused, "attempts": answer.attempts,
              "field_sources": answer.field_sources,
              "sources": [source_json(name, kb, h, i, {n for ns in answer.field_sources.values() for n in ns})
                          for i, h in enumerate(answer.sources, 1)]}
    if not body.stream:
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}], "usage": None, **extras}

    def stream() -> Iterator[str]:
        yield _sse(_chunk(completion_id, created, body.model, {"role": "assistant", "content": ""}))
        yield _sse(_chunk(completion_id, created, body.model, {"content": content}))
        yield _sse({**_chunk(completion_id, created, body.model, {}, "stop"), **extras})
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _passthrough_structured(body: ChatRequest, llm: Any, messages: list[dict[str, str]], schema: dict[str, Any],
                            params: dict[str, Any]) -> str:
    """A pass-through chat whose reply must validate against ``schema``: retried with the error, or a 422."""
    try:
        check_schema(schema)
    except ConfigError as exc:
        raise ApiError(400, str(exc), code="invalid_response_format") from None
    instruction = {"role": "system", "content": "Reply with one JSON value that matches this JSON Schema and "
                   f"nothing else:\n{json.dumps(schema, ensure_ascii=False)}"}
    try:
        data, _, _ = generate_structured(lambda conversation: llm.chat(conversation, **params),
                                         [instruction, *messages], schema, retries=body.retries,
                                         write_json=json_writer(llm, schema))
    except StructuredOutputError as exc:
        raise ApiError(422, str(exc), "invalid_request_error", "schema_validation_failed") from None
    except RagtuneError as exc:
        raise _generation_error(exc) from None
    return json.dumps(data, ensure_ascii=False)


def _passthrough(body: ChatRequest, state: ServerState) -> Any:
    llm = state.chat_llm()
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    params: dict[str, Any] = {"max_tokens": body.max_tokens or state.settings.max_new_tokens}
    if body.temperature is not None:
        params["temperature"] = body.temperature
    if body.top_p is not None:
        params["top_p"] = body.top_p
    if body.stop:
        params["stop"] = [body.stop] if isinstance(body.stop, str) else body.stop
    if body.seed is not None:
        params["seed"] = body.seed
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    schema = body.response_format.schema_or_none() if body.response_format else None
    if not body.stream or schema is not None:
        try:
            text = (_passthrough_structured(body, llm, messages, schema, params) if schema is not None
                    else llm.chat(messages, **params))
        except RagtuneError as exc:
            raise _generation_error(exc) from None
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": token_usage(llm, messages, text),
        }

    def stream() -> Iterator[str]:
        yield _sse(_chunk(completion_id, created, body.model, {"role": "assistant", "content": ""}))
        try:
            pieces = []
            for piece in llm.stream(messages, **params):
                pieces.append(piece)
                yield _sse(_chunk(completion_id, created, body.model, {"content": piece}))
            usage = token_usage(llm, messages, "".join(pieces))
            yield _sse({**_chunk(completion_id, created, body.model, {}, "stop"), "usage": usage})
        except RagtuneError as exc:
            error = _generation_error(exc)
            yield _sse({"error": {"message": error.message, "type": error.type, "code": error.code}})
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _usage(counted: dict[str, int]) -> dict[str, int]:
    """OpenAI's usage object; zeros when no generation ran (a refusal decided by retrieval alone)."""
    return {k: counted.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def _record(state: ServerState, name: str, answer: Answer) -> None:
    state.metrics.answers.labels(name, "refused" if answer.refused else "answered").inc()
    try:
        state.kbs.feedback(name).record_answer(answer)
    except Exception:  # an answer is still worth returning when it cannot be remembered
        log.exception("could not record answer %s", answer.id)


def _generation_error(exc: RagtuneError) -> ApiError:
    if isinstance(exc, (ConfigError, FilterError)):
        return ApiError(400, str(exc), code="invalid_request")
    if isinstance(exc, LLMError):
        return ApiError(502, f"the language model failed: {exc}", "api_error", "llm_unavailable")
    return ApiError(500, str(exc), "api_error", "internal_error")


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


@router.post("/embeddings", summary="Embed texts with a knowledge base's embedder (model: kb:NAME)")
def embeddings(body: EmbeddingRequest, state: State, key: Key) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not isinstance(t, str) or len(t) > 20_000 for t in texts):
        raise ApiError(400, "input must be a non-empty string or list of strings of at most 20,000 characters",
                       code="invalid_input")
    name = body.model[len(KB_PREFIX):] if body.model.startswith(KB_PREFIX) else None
    if name is None:
        # A bare embedder name: any knowledge base this key may read that uses it.
        for candidate in state.kbs.names():
            if key.allows(candidate, "reader") and state.kbs.get(candidate).settings.embedder == body.model:
                name = candidate
                break
        if name is None:
            raise ApiError(404, f"no model {body.model!r} — use 'kb:NAME' (GET /v1/models lists them)",
                           code="model_not_found")
    authorize(key, name, "reader")
    kb = state.kbs.get(name)
    vectors = kb.embedder.encode_documents(texts)
    counter = kb.embedder.token_counter()
    tokens = sum(len(counter.spans(text)) for text in texts)
    return {
        "object": "list", "model": kb.embedder.name,
        "data": [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                 for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: np.ndarray, encoding: str) -> Any:
    # The openai client asks for base64: little-endian float32 bytes, as OpenAI sends them.
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
