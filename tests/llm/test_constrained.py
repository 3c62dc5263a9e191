"""Constrained JSON decoding: ragtune writes the structure, the bundled SmolLM2 only the values, so every reply
parses and validates, and the values come from the sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.llm.constrained import constrainable
from ragtune.structured import validation_errors

SOURCE = ("Aster X200 router: the firmware update takes 7 minutes and the warranty is 24 months. "
          "Colour: graphite. It is in stock.")


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You extract facts from the sources into JSON."},
            {"role": "user", "content": f"Sources:\n{SOURCE}\n\nQuestion: {question}\n\nJSON:"}]


@pytest.mark.unit
@pytest.mark.parametrize(("schema", "ok"), [
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": ["integer", "null"]}}}, True),
    ({"properties": {"a": {"enum": ["x", "y"]}, "b": {"type": "array", "items": {"type": "number"}}}}, True),
    ({"type": "object", "properties": {"a": {"const": 3}, "b": {"type": "object", "properties": {
        "c": {"type": "boolean"}}}}}, True),
    ({"type": "object"}, False),  # no properties to write
    ({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}, False),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}}, False),
    ({"type": "object", "properties": {"a": {"type": ["string", "integer"]}}}, False),
    ({"type": "array"}, False),  # no items
    ("not a schema", False),
])
def test_which_schemas_decoding_can_follow(schema, ok) -> None:
    assert constrainable(schema) is ok


@pytest.mark.integration
def test_every_kind_of_value_is_written_valid_and_from_the_sources(smollm2) -> None:
    llm = smollm2.llm
    schema = {"type": "object", "properties": {
        "product": {"type": "string"}, "warranty_months": {"type": "integer"}, "update_minutes": {"type": "number"},
        "colour": {"enum": ["black", "graphite", "white"]}, "in_stock": {"type": "boolean"},
        "notes": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "maker": {"type": "object", "properties": {"country": {"type": ["string", "null"]}}},
        "version": {"const": 1}},
        "required": ["product", "warranty_months", "colour"], "additionalProperties": False}
    reply = llm.chat_json(_messages("What are the facts about the Aster X200?"), schema)
    assert reply is not None
    data = json.loads(reply)
    assert validation_errors(data, schema) == []
    assert data["warranty_months"] == 24 and data["colour"] == "graphite" and data["version"] == 1
    assert "Aster" in data["product"] and len(data["notes"]) <= 2


@pytest.mark.integration
def test_a_string_answer_is_written_from_the_source_and_unsupported_schemas_are_declined(smollm2) -> None:
    """The answer field holds the source's fact; a schema decoding cannot follow gets None (the caller prompts)."""
    schema = {"type": "object", "properties": {"product": {"type": "string"}, "answer": {"type": "string"}},
              "required": ["product", "answer"], "additionalProperties": False}
    messages = _messages("How long is the warranty of the Aster X200?")
    data = json.loads(smollm2.llm.chat_json(messages, schema) or "null")
    assert validation_errors(data, schema) == [] and "24" in data["answer"]
    assert smollm2.llm.chat_json(messages, {"type": "object", "properties": {"a": {"anyOf": []}}}) is None


@pytest.mark.integration
def test_the_filler_refuses_what_it_cannot_follow_and_keeps_no_state(smollm2) -> None:
    from ragtune.llm.constrained import JsonFiller

    llm = smollm2.llm
    with pytest.raises(ConfigError, match="anyOf"):
        JsonFiller(llm.model, llm.tokenizer, llm.device).fill([1, 2], {"anyOf": []})
    schema = {"type": "object", "properties": {"minutes": {"type": "integer"}}}
    first = llm.chat_json(_messages("How many minutes does the firmware update take?"), schema)
    again = llm.chat_json(_messages("How many minutes does the firmware update take?"), schema)
    assert first == again == '{"minutes": 7}'


@pytest.mark.integration
def test_structured_answers_with_the_bundled_model_validate_on_the_first_attempt(tmp_path: Path, embedder) -> None:
    from ragtune.kb import KnowledgeBase

    corpus = Path(__file__).resolve().parents[1] / "fixtures" / "guard" / "acl"
    schema = {"type": "object", "properties": {"weeks_birth_parents": {"type": "integer"},
                                               "weeks_other_parents": {"type": "integer"}},
              "required": ["weeks_birth_parents", "weeks_other_parents"]}
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder) as kb:
        kb.ingest(corpus / "hr", acl="hr")
        answer = kb.ask_structured("How many weeks of parental leave do birth parents and other parents get?",
                                   schema, groups="hr", retries=0)
        assert answer.strategy == "constrained" and answer.attempts == 1 and not answer.refused
        assert validation_errors(answer.data, schema) == []
        assert answer.data["weeks_birth_parents"] == 20


@pytest.mark.unit
def test_stated_numbers_leave_out_markup_and_citations() -> None:
    from ragtune.llm.constrained import stated_numbers

    text = '<source n="2">\nBirth parents get 20 weeks [3], others 12.5; budget 1,250,000 EUR; v2 and -4 C.\n</source>'
    assert stated_numbers(text) == {"20", "12.5", "1250000", "4", "-4"}
