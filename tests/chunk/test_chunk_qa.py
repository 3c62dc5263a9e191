"""QAChunker: exactly one question-and-answer pair per chunk, from Q&A files and from Q:/A: FAQ text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.chunk.qa import QAChunker, faq_pairs
from ragtune.chunk.recursive import RecursiveChunker
from ragtune.errors import ConfigError
from ragtune.parse.markdown import parse_markdown
from ragtune.parse.qa import parse_qa
from ragtune.parse.text import parse_text
from ragtune.tokens import RegexTokenCounter
from ragtune.types import BlockType, Chunk, Document

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "qa"


def _assert_exact(document: Document, chunks: list[Chunk]) -> None:
    for i, chunk in enumerate(chunks):
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.meta.chunk_index == i


def _pair_chunks(chunks: list[Chunk]) -> dict[str, list[Chunk]]:
    out: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        if chunk.meta.section_title is not None:
            out.setdefault(chunk.meta.section_title, []).append(chunk)
    return out


@pytest.mark.parametrize("name", ["faq.json", "mixed.jsonl", "chat.jsonl"])
def test_each_pair_of_a_qa_file_is_exactly_one_chunk(name):
    document = parse_qa((FIXTURES / name).read_bytes(), name)
    chunks = QAChunker().split(document)
    blocks = document.blocks
    pairs = [(b, blocks[i + 1]) for i, b in enumerate(blocks) if b.type is BlockType.HEADING]

    by_question = _pair_chunks(chunks)
    assert list(by_question) == [question.heading_path[0] for question, _ in pairs]
    for question, answer in pairs:
        [chunk] = by_question[question.heading_path[0]]
        assert (chunk.start, chunk.end) == (question.start, answer.end)
        assert chunk.text == f"{question.text}\n\n{answer.text}"
        assert chunk.meta.heading_path == [question.heading_path[0]]
    _assert_exact(document, chunks)


def test_text_outside_pairs_is_chunked_without_a_question():
    document = parse_qa((FIXTURES / "mixed.jsonl").read_bytes(), "mixed.jsonl")
    chunks = QAChunker().split(document)
    assert chunks[-1].text == "id: 42\nnote: not a Q&A record\ntags: misc, internal"
    assert chunks[-1].meta.section_title is None
    wrapper = QAChunker().split(parse_qa((FIXTURES / "faq.json").read_bytes(), "faq.json"))[0]
    assert wrapper.text == "version: 2\n\nsource: support portal export"


def test_an_over_long_answer_is_split_and_every_piece_keeps_its_question():
    answer = " ".join(f"Step {i}: check the valve and write down the pressure." for i in range(60))
    records = [{"question": "How is the boiler serviced?", "answer": answer}, {"q": "Who may do it?", "a": "A fitter."}]
    data = "\n".join(json.dumps(r) for r in records).encode()
    document = parse_qa(data, "boiler.jsonl")
    chunks = QAChunker(chunk_size=50, chunk_overlap=5).split(document)
    pieces = _pair_chunks(chunks)["How is the boiler serviced?"]

    assert len(pieces) > 3
    assert pieces[0].text.startswith("How is the boiler serviced?\n\nStep 0:")
    assert all("How is the boiler serviced?" not in p.text for p in pieces[1:])  # nothing is repeated
    assert pieces[-1].text.endswith("Step 59: check the valve and write down the pressure.")
    counter = RegexTokenCounter()
    assert all(len(counter.spans(p.text)) <= 50 for p in pieces)
    assert [c.text for c in _pair_chunks(chunks)["Who may do it?"]] == ["Who may do it?\n\nA fitter."]
    _assert_exact(document, chunks)


class TestFAQText:
    def test_markdown_faq_is_chunked_by_pair(self):
        document = parse_markdown((FIXTURES / "faq.md").read_bytes(), "faq.md")
        chunks = QAChunker().split(document)
        by_question = _pair_chunks(chunks)

        assert [c.meta.section_title for c in chunks] == [
            "Product FAQ",
            "How long does shipping take?",
            "Can I return an item?",
            "Do you ship abroad?",
            "支持哪些付款方式？",
            "发票怎么开？",
            "Contact",
        ]
        [returns] = by_question["Can I return an item?"]
        assert returns.text == (
            "**Q: Can I return an item?**\n\nA: Yes, within 30 days of delivery.\n\n"
            "- Items must be unused.\n- Refunds go to the original payment method."
        )
        assert returns.meta.heading_path == ["Product FAQ", "Can I return an item?"]
        [invoice] = by_question["发票怎么开？"]
        # The "## Contact" heading after it ends the last pair.
        assert invoice.text == "问题：发票怎么开？\n答案：下单时勾选“需要发票”，填写抬头即可。"
        _assert_exact(document, chunks)

    def test_plain_text_faq_with_numbered_and_full_width_markers(self):
        text = (
            "Frequently asked questions\n\n"
            "Q1: Is there a free plan?\nA1: Yes, for up to three users.\n\n"
            "Q2：Can I pay yearly?\nA2：Yes, with a 10% discount.\n\n"
            "问：可以开发票吗？\n答：可以。"
        )
        document = parse_text(text.encode(), "faq.txt")
        chunks = QAChunker().split(document)
        assert [(c.meta.section_title, c.text) for c in chunks] == [
            (None, "Frequently asked questions"),
            ("Is there a free plan?", "Q1: Is there a free plan?\nA1: Yes, for up to three users."),
            ("Can I pay yearly?", "Q2：Can I pay yearly?\nA2：Yes, with a 10% discount."),
            ("可以开发票吗？", "问：可以开发票吗？\n答：可以。"),
        ]

    def test_a_question_without_an_answer_is_not_a_pair(self):
        text = "Q: Unanswered?\nStill open.\n\nQ: Answered?\nA: Yes."
        pairs = faq_pairs(text)
        assert [(p.question, text[p.start : p.end]) for p in pairs] == [("Answered?", "Q: Answered?\nA: Yes.")]

    def test_a_multi_line_question_is_collapsed_into_one_title(self):
        pairs = faq_pairs("Question: What happens when\nthe disk is full?\nAnswer: Writes fail cleanly.")
        assert [p.question for p in pairs] == ["What happens when the disk is full?"]

    def test_text_without_markers_is_chunked_like_the_recursive_chunker(self):
        text = "\n\n".join(f"Paragraph {i} talks about quality assurance and answers nothing." for i in range(12))
        document = parse_text(text.encode(), "plain.txt")
        qa = QAChunker(chunk_size=40, chunk_overlap=8).split(document)
        recursive = RecursiveChunker(chunk_size=40, chunk_overlap=8).split(document)
        assert [(c.start, c.end) for c in qa] == [(c.start, c.end) for c in recursive]
        assert all(c.meta.section_title is None for c in qa)


def test_sizes_are_validated():
    with pytest.raises(ConfigError, match="chunk_size"):
        QAChunker(chunk_size=0)
