"""Structured answers: JSON extraction from replies, validation with retries, field sources, and the KB path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtune.errors import ConfigError
from ragtune.structured import (
    StructuredOutputError,
    check_schema,
    coerce,
    extract_json,
    field_sources,
    generate_fields,
    generate_structured,
    skeleton,
    validation_errors,
)
from ragtune.types import ChunkMeta, Hit

SCHEMA = {"type": "object", "properties": {"product": {"type": "string"}, "years": {"type": "integer"},
                                           "features": {"type": "array", "items": {"type": "string"}}},
          "required": ["product", "years"], "additionalProperties": False}


@pytest.mark.unit
class TestLogic:
    @pytest.mark.parametrize("reply", [
        '{"product": "X200", "years": 3}',
        'Here you go:\n```json\n{"product": "X200", "years": 3}\n```',
        'Sure! {"product": "X200", "years": 3} Hope that helps {not json}',
        'prefix {"product": "X{200}", "years": 3}',
    ])
    def test_extract_json(self, reply):
        assert extract_json(reply)["years"] == 3

    def test_no_json_is_an_error(self):
        with pytest.raises(ValueError, match="no JSON"):
            extract_json("The warranty is three years.")

    def test_skeleton_and_errors(self):
        assert skeleton(SCHEMA) == {"product": "<string>", "years": "<integer>", "features": ["<string>"]}
        assert validation_errors({"product": "X", "years": "3"}, SCHEMA) == ["/years: '3' is not of type 'integer'"]
        assert validation_errors({"product": "X", "years": 3}, SCHEMA) == []

    def test_invalid_schemas_are_refused(self):
        with pytest.raises(ConfigError, match="invalid JSON Schema"):
            check_schema({"type": "objekt"})
        with pytest.raises(ConfigError, match="must be a JSON object"):
            check_schema(["type"])

    def test_an_invalid_reply_is_sent_back_with_its_error(self):
        seen: list[list[dict[str, str]]] = []
        replies = iter(['{"product": "X200"}', '{"product": "X200", "years": 3}'])

        def generate(messages: list[dict[str, str]]) -> str:
            seen.append(messages)
            return next(replies)

        data, attempts, errors = generate_structured(generate, [{"role": "user", "content": "q"}], SCHEMA)
        assert data == {"product": "X200", "years": 3} and attempts == 2
        assert "'years' is a required property" in errors[0] and errors[0] in seen[1][-1]["content"]

    def test_never_valid_is_a_clear_error(self):
        with pytest.raises(StructuredOutputError, match="after 2 attempt") as info:
            generate_structured(lambda m: "no idea", [{"role": "user", "content": "q"}], SCHEMA, retries=1)
        assert info.value.attempts == 2 and len(info.value.errors) == 2
        with pytest.raises(ConfigError):
            generate_structured(lambda m: "{}", [], SCHEMA, retries=9)

    @pytest.mark.parametrize(("reply", "schema", "value"), [
        ("20 weeks", {"type": "integer"}, 20), ("The value is 3,200.", {"type": "integer"}, 3200),
        ("about 1.5 kg", {"type": "number"}, 1.5), ("Yes, it does.", {"type": "boolean"}, True),
        ("否", {"type": "boolean"}, False), ("\"Aster X200\"\nmore", {"type": "string"}, "Aster X200"),
        ("it is Red", {"enum": ["red", "blue"]}, "red"), ("none", {"type": "integer"}, None),
    ])
    def test_coerce_short_replies(self, reply, schema, value):
        assert coerce(reply, schema) == value

    def test_fields_one_at_a_time_for_flat_schemas(self):
        replies = iter(["Aster X200", "3 years"])
        data = generate_fields(lambda m: next(replies), "warranty?", SCHEMA | {"properties": {
            "product": {"type": "string"}, "years": {"type": "integer"}}}, [])
        assert data == {"product": "Aster X200", "years": 3}
        assert generate_fields(lambda m: "x", "q", {"type": "object", "properties": {"a": {"type": "object"}}},
                               []) is None

    def test_fields_point_at_the_sources_that_state_them(self):
        hits = [Hit(chunk_id="a", document_id="d1", source="a.md", text="The Aster X200 router: 3 years warranty.",
                    score=1, meta=ChunkMeta()),
                Hit(chunk_id="b", document_id="d2", source="b.md", text="It supports Wi-Fi 6 and WPA3.", score=1,
                    meta=ChunkMeta())]
        found = field_sources({"product": "Aster X200", "years": 3, "features": ["Wi-Fi 6", "Bluetooth"]}, hits)
        assert found == {"/product": [1], "/years": [1], "/features/0": [2]}

    def test_a_value_in_several_sources_points_at_those_that_state_it_with_its_field(self):
        def hit(n: int, text: str) -> Hit:
            return Hit(chunk_id=str(n), document_id=str(n), source=f"{n}.md", text=text, score=1, meta=ChunkMeta())

        hits = [hit(1, "Bonuses are capped at 20 percent. The office closes at 20:00 on weekdays."),
                hit(2, "Birth parents receive 20 weeks of paid leave; other parents receive 12 weeks."),
                hit(3, "员工每年享有20天年假，病假另计。"), hit(4, "The order ships in 20 boxes.")]
        found = field_sources({"weeks_birth_parents": 20, "weeksOtherParents": 12, "年假天数": 20,
                               "box_count": 99, "items": [20]}, hits)
        # 'weeks' matches 'week' in hit 2, not 'weekdays' in hit 1; the Chinese key by its characters (年假).
        assert found["/weeks_birth_parents"] == [2] and found["/weeksOtherParents"] == [2]
        assert found["/年假天数"] == [3]
        assert "/box_count" not in found
        assert found["/items/0"] == [1, 2, 3, 4]  # no field words next to it anywhere: every source that has it
        # A decimal point is not a sentence end: 2.5 stands with 'days' in hit 2's sentence.
        decimals = [hit(1, "Bonuses are capped at 2.5 percent."), hit(2, "Sick days accrue at 2.5 per month.")]
        assert field_sources({"sick_days": 2.5}, decimals) == {"/sick_days": [2]}


class ScriptedLLM:
    name = "scripted"
    context_window = 8192

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        self.calls.append(messages)
        return self.replies.pop(0)

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]:
        yield self.chat(messages)


@pytest.mark.integration
def test_structured_answers_from_a_knowledge_base(tmp_path, embedder):
    from ragtune.kb import KnowledgeBase

    corpus = Path(__file__).resolve().parents[1] / "fixtures" / "guard" / "acl"
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder) as kb:
        kb.ingest(corpus / "hr", acl="hr")
        kb.ingest(corpus / "public")
        schema = {"type": "object", "properties": {"weeks_birth_parents": {"type": "integer"},
                                                   "weeks_other_parents": {"type": "integer"}},
                  "required": ["weeks_birth_parents", "weeks_other_parents"]}
        valid = '{"weeks_birth_parents": 20, "weeks_other_parents": 12}'
        kb.llm = ScriptedLLM('{"weeks_birth_parents": "twenty"}', valid)
        answer = kb.ask_structured("How many weeks of parental leave?", schema, groups="hr", actor="test:hr")
        assert answer.data == {"weeks_birth_parents": 20, "weeks_other_parents": 12} and answer.attempts == 2
        assert answer.sources[0].source.endswith("parental-leave.md")
        assert answer.field_sources["/weeks_birth_parents"] == [1]
        prompt = kb.llm.calls[0][1]["content"]
        assert '<source n="1">' in prompt and '{"weeks_birth_parents": "<integer>"' in prompt
        kb.llm = ScriptedLLM('{"weeks_birth_parents": 1, "weeks_other_parents": 1}')
        hidden = kb.ask_structured("How many weeks of parental leave?", schema, groups="all", actor="test:all")
        assert all("hr/" not in h.source for h in hidden.sources)
        kb.llm = ScriptedLLM("no", "still no", "nope", "twenty", "nope")
        with pytest.raises(StructuredOutputError):
            kb.ask_structured("How many weeks of parental leave?", schema, groups="hr", actor="test:bad")
        kb.llm = ScriptedLLM("no", "still no", "nope", "20 weeks", "The value is 12.")
        fields = kb.ask_structured("How many weeks of parental leave?", schema, groups="hr", actor="test:fields")
        assert fields.data == {"weeks_birth_parents": 20, "weeks_other_parents": 12}
        assert fields.strategy == "fields" and fields.attempts == 4
        assert "weeks birth parents" in kb.llm.calls[3][1]["content"]
        entries = kb.audit_log().entries(action="answer")
        assert [(e.actor, e.detail["valid"], e.refused) for e in entries] == [
            ("test:hr", True, False), ("test:all", True, False), ("test:bad", False, True),
            ("test:fields", True, False)]
