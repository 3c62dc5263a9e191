"""JSON and JSON Lines parser: question/answer records become pairs of blocks, any other JSON readable text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

from ragtune.errors import ParseError
from ragtune.parse.blocks import build_document, collapse_whitespace
from ragtune.parse.text import decode_text
from ragtune.types import Block, BlockType, Document

#: Keys that hold a record's question or answer, most specific first; matched case-insensitively.
QUESTION_KEYS = ("question", "q", "query", "prompt", "instruction", "问题", "问", "提问", "input")
ANSWER_KEYS = ("answer", "a", "response", "output", "completion", "答案", "答", "回答", "解答")
#: Keys of chat records (OpenAI ``messages``, ShareGPT ``conversations``) and the roles that ask and answer.
CHAT_KEYS = ("messages", "conversations", "conversation")
_ASKING_ROLES = frozenset({"user", "human"})
_ANSWERING_ROLES = frozenset({"assistant", "gpt", "bot", "model"})

_JSON_LINES_EXTENSIONS = frozenset({".jsonl", ".ndjson"})

#: A question and its answer.
Pair = tuple[str, str]


def parse_qa(data: bytes, source: str) -> Document:
    """Parse a JSON or JSON Lines file.

    Records recognised as Q&A (question/answer, q/a, query/response, instruction(+input)/output,
    prompt/completion, 问题/答案, chat ``messages``) become a HEADING block with the question followed by a
    PARAGRAPH with the answer, both with ``heading_path == [question]``; the document's ``source_type`` is
    then ``"qa"``. Everything else is rendered as ``path: value`` lines (``source_type`` ``"json"``) so any
    JSON stays searchable.
    """
    text = decode_text(data, source)
    if PurePath(source).suffix.lower() in _JSON_LINES_EXTENSIONS:
        records = _json_lines(text, source)
        blocks = [block for record in records for block in _record_blocks(record, "")]
    elif text.strip():
        blocks = _value_blocks(_json(text, source))
    else:
        blocks = []
    pairs = sum(1 for block in blocks if block.type is BlockType.HEADING)
    return build_document(
        blocks,
        source=source,
        source_type="qa" if pairs else "json",
        title=PurePath(source).name,
        metadata={"qa_pairs": pairs} if pairs else {},
    )


def _json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "correct the file there"
        if exc.msg == "Extra data":
            hint = "if the file holds one JSON record per line, rename it to .jsonl"
        raise ParseError(
            source, f"line {exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}) — {hint}"
        ) from exc


def _json_lines(text: str, source: str) -> list[Any]:
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ParseError(
                source, f"line {number}: invalid JSON ({exc.msg}, column {exc.colno}) — fix or remove that line"
            ) from exc
    return records


def _value_blocks(value: Any) -> list[Block]:
    """Blocks for a whole JSON document: a list of records, a wrapper object holding one, or any other value."""
    if isinstance(value, list):
        return [block for item in value for block in _record_blocks(item, "")]
    if isinstance(value, dict) and not _pairs(value):
        blocks: list[Block] = []
        for key, item in value.items():
            if isinstance(item, list) and any(_pairs(element) for element in item):
                # {"version": 2, "data": [{"question": ..., "answer": ...}, ...]}: the records are one level down.
                for i, element in enumerate(item):
                    blocks.extend(_record_blocks(element, f"{key}[{i}]"))
            else:
                blocks.append(_text_block(item, str(key)))
        return blocks
    return _record_blocks(value, "")


def _record_blocks(record: Any, path: str) -> list[Block]:
    pairs = _pairs(record)
    if not pairs:
        return [_text_block(record, path)]
    blocks = []
    for question, answer in pairs:
        # The one-line form names the pair in chunk metadata (section_title) and in citations.
        title = [collapse_whitespace(question)]
        blocks.append(Block(type=BlockType.HEADING, text=question, level=1, heading_path=title))
        blocks.append(Block(type=BlockType.PARAGRAPH, text=answer, heading_path=title))
    return blocks


def _text_block(value: Any, path: str) -> Block:
    return Block(type=BlockType.PARAGRAPH, text="\n".join(_lines(value, path)))


def _pairs(record: Any) -> list[Pair]:
    """The question/answer pairs of one record (a chat record may hold several); empty if it is not Q&A."""
    if not isinstance(record, dict):
        return []
    fields = {str(key).strip().lower(): value for key, value in record.items()}
    for key in CHAT_KEYS:
        if isinstance(fields.get(key), list):
            return _chat_pairs(fields[key])
    question_key = next((k for k in QUESTION_KEYS if _text(fields.get(k))), None)
    answer_key = next((k for k in ANSWER_KEYS if _text(fields.get(k))), None)
    if question_key is None or answer_key is None:
        return []
    question = _text(fields[question_key])
    if question_key == "instruction" and _text(fields.get("input")):
        # Alpaca records: the input is the material the instruction is about.
        question = f"{question}\n\n{_text(fields['input'])}"
    return [(question, _text(fields[answer_key]))]


def _chat_pairs(turns: list[Any]) -> list[Pair]:
    """Each user turn answered by the next assistant turn is a pair; system prompts are left out."""
    pairs: list[Pair] = []
    asked: str | None = None
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        role = str(turn.get("role", turn.get("from", ""))).strip().lower()
        content = _text(turn.get("content", turn.get("value")))
        if role in _ASKING_ROLES:
            asked = content or None
        elif role in _ANSWERING_ROLES and asked and content:
            pairs.append((asked, content))
            asked = None
    return pairs


def _text(value: Any) -> str:
    """A field's text: strings as they are, lists of strings or of chat content parts joined; else empty."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and value:
        parts = [item.get("text") if isinstance(item, dict) else item for item in value]
        texts = [part.strip() for part in parts if isinstance(part, str)]
        if len(texts) == len(parts):
            return "\n".join(texts).strip()
    return ""


def _lines(value: Any, path: str) -> Iterator[str]:
    """``path: value`` lines for every leaf, paths written ``a.b[0].c``; a list of plain values stays on one line."""
    if isinstance(value, dict):
        if not value:
            yield f"{path}: {{}}" if path else "{}"
        for key, item in value.items():
            yield from _lines(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            joined = ", ".join(_scalar(item) for item in value)
            yield f"{path}: {joined}" if path else joined
        else:
            for i, item in enumerate(value):
                yield from _lines(item, f"{path}[{i}]")
    else:
        yield f"{path}: {_scalar(value)}" if path else _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
