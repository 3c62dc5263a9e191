"""JSON / JSON Lines parser: Q&A records in every common shape become pairs; other JSON becomes readable text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse.qa import parse_qa
from ragtune.types import BlockType, Document

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "qa"


def _parse(name: str) -> Document:
    return parse_qa((FIXTURES / name).read_bytes(), name)


def _pairs(document: Document) -> list[tuple[str, str]]:
    """(question, answer) for each HEADING block and the answer block after it."""
    blocks = document.blocks
    return [(b.text, blocks[i + 1].text) for i, b in enumerate(blocks) if b.type is BlockType.HEADING]


def test_a_json_export_with_records_under_a_key(check_offsets):
    document = _parse("faq.json")
    records = json.loads((FIXTURES / "faq.json").read_text(encoding="utf-8"))["data"]

    assert document.source_type == "qa"
    assert document.title == "faq.json"
    assert document.metadata == {"qa_pairs": 3}
    assert _pairs(document) == [
        (records[0]["question"], records[0]["answer"]),
        (records[1]["question"], records[1]["answer"]),
        (records[2]["问题"], records[2]["答案"]),  # Chinese keys
    ]
    # The wrapper's own fields stay searchable.
    assert document.blocks[0].text == "version: 2"
    assert document.blocks[1].text == "source: support portal export"
    check_offsets(document)


def test_question_and_answer_blocks_share_the_question_as_heading_path():
    document = _parse("faq.json")
    heading, answer = document.blocks[2], document.blocks[3]
    assert (heading.type, answer.type) == (BlockType.HEADING, BlockType.PARAGRAPH)
    assert heading.heading_path == answer.heading_path == ["How do I reset my password?"]


def test_json_lines_with_every_common_key_style(check_offsets):
    document = _parse("mixed.jsonl")
    assert _pairs(document) == [
        ("What port does the server listen on?", "Port 8080 unless RAGTUNE_PORT is set."),
        ("Which embedder is the default?", "A small MiniLM model that ships with the package."),
        ("Translate to French\n\nGood morning", "Bonjour"),  # alpaca: instruction + input -> output
        ("Is GPU required?", "No; everything runs on one CPU by default."),
        ("Where are logs written?", "To stderr by default.\nSet RAGTUNE_LOG_FILE to write a file."),
    ]
    # A record that is not Q&A is kept as text, not dropped.
    assert document.blocks[-1].type is BlockType.PARAGRAPH
    assert document.blocks[-1].text == "id: 42\nnote: not a Q&A record\ntags: misc, internal"
    check_offsets(document)


def test_chat_records_give_one_pair_per_answered_user_turn(check_offsets):
    document = _parse("chat.jsonl")
    assert _pairs(document) == [
        ("How do I cancel my subscription?", "Go to Billing and press Cancel; you keep access until the period ends."),
        ("什么是检索增强生成？", "检索增强生成（RAG）先检索相关文档，再让模型依据这些文档作答。"),
        ("它需要微调吗？", "不需要，但可以和微调结合使用。"),
        ("Which formats can I upload?", "PDF, Word, Markdown, HTML, text, code and JSON."),
    ]
    assert "helpful support agent" not in document.text  # system prompts are not content
    check_offsets(document)


def test_a_top_level_list_of_records():
    data = json.dumps([{"question": "Why?", "answer": "Because."}, {"q": "How?", "a": "Like this."}]).encode()
    document = parse_qa(data, "list.json")
    assert _pairs(document) == [("Why?", "Because."), ("How?", "Like this.")]


def test_json_that_is_not_q_and_a_is_rendered_as_path_value_lines(check_offsets):
    document = _parse("settings.json")
    assert document.source_type == "json"
    assert document.metadata == {}
    assert all(b.type is BlockType.PARAGRAPH for b in document.blocks)
    assert document.text.split("\n\n") == [
        "service.name: ragtune\nservice.replicas: 3\nservice.debug: false",
        "storage.path: /var/lib/ragtune\nstorage.backends: sqlite, hnsw",
        "owners[0].name: Ada\nowners[0].email: ada@example.com\nowners[1].name: 李雷\nowners[1].email: null",
    ]
    check_offsets(document)


def test_a_record_whose_answer_is_not_text_is_not_a_pair():
    document = parse_qa(b'{"q": "threshold", "a": 0.5}', "config.json")
    assert document.source_type == "json"
    assert document.text == "q: threshold\n\na: 0.5"


def test_a_bad_json_line_names_its_line_number():
    with pytest.raises(ParseError, match=r"broken\.jsonl: line 3: invalid JSON .* fix or remove that line"):
        _parse("broken.jsonl")


def test_invalid_json_names_line_and_column():
    with pytest.raises(ParseError, match=r"bad\.json: line 2: invalid JSON \(Expecting ',' delimiter, column 16\)"):
        parse_qa(b'{"question": "a",\n "answer": "b" "x"}', "bad.json")


def test_json_lines_saved_as_json_get_a_rename_hint():
    data = b'{"q": "one?", "a": "1"}\n{"q": "two?", "a": "2"}\n'
    with pytest.raises(ParseError, match=r"line 2: .*rename it to \.jsonl"):
        parse_qa(data, "pairs.json")
    assert len(_pairs(parse_qa(data, "pairs.jsonl"))) == 2


def test_an_empty_file_is_an_empty_document():
    document = parse_qa(b"\n", "empty.json")
    assert document.blocks == [] and document.source_type == "json"
