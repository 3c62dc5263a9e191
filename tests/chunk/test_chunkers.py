"""Chunkers: exact offsets, token budgets, overlap, section boundaries and validation."""

from __future__ import annotations

import random

import pytest

from ragtune.chunk import MarkdownChunker, RecursiveChunker, RegexTokenCounter, TokenChunker, make_chunker
from ragtune.chunk.factory import chunker_name_for
from ragtune.errors import ConfigError
from ragtune.types import Block, BlockType, Document

pytestmark = pytest.mark.unit

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def _random_text(seed: int, paragraphs: int = 8) -> str:
    rng = random.Random(seed)
    paras = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(1, 6)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", "。"]))
        paras.append(" ".join(sentences) if rng.random() < 0.7 else "\n".join(sentences))
    return "\n\n".join(paras)


def _doc(text: str, source_type: str = "txt") -> Document:
    blocks = [Block(type=BlockType.PARAGRAPH, text=p) for p in text.split("\n\n")]
    return Document.assemble(blocks, source="mem.txt", source_type=source_type, language="en")


def _tokens(text: str) -> int:
    return len(RegexTokenCounter().spans(text))


@pytest.mark.parametrize("chunker_cls", [TokenChunker, RecursiveChunker, MarkdownChunker])
@pytest.mark.parametrize("seed", range(6))
def test_offsets_map_back_to_the_exact_source_text(chunker_cls, seed):
    doc = _doc(_random_text(seed))
    chunks = chunker_cls(chunk_size=40, chunk_overlap=8).split(doc)
    assert chunks
    for i, chunk in enumerate(chunks):
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.meta.chunk_index == i
        assert chunk.meta.word_count > 0


@pytest.mark.parametrize("chunker_cls", [TokenChunker, RecursiveChunker])
@pytest.mark.parametrize("seed", range(6))
def test_chunks_respect_the_token_budget_and_cover_the_text(chunker_cls, seed):
    doc = _doc(_random_text(seed, paragraphs=12))
    chunks = chunker_cls(chunk_size=40, chunk_overlap=8).split(doc)
    assert all(_tokens(c.text) <= 40 for c in chunks)
    # Every token of the document lies in some chunk: nothing is lost between chunks.
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for start, end in RegexTokenCounter().spans(doc.text):
        assert start in covered, doc.text[start:end]


def test_token_windows_overlap_by_the_configured_amount():
    doc = _doc(" ".join(f"w{i}" for i in range(100)))
    chunks = TokenChunker(chunk_size=30, chunk_overlap=10).split(doc)
    assert [c.text.split()[0] for c in chunks] == ["w0", "w20", "w40", "w60", "w80"]
    assert chunks[0].text.split()[-10:] == chunks[1].text.split()[:10]
    assert chunks[-1].text.split()[-1] == "w99"


def test_recursive_prefers_paragraph_then_sentence_boundaries():
    text = "First sentence here. Second sentence here.\n\nThird paragraph sentence one. And two."
    chunks = RecursiveChunker(chunk_size=6, chunk_overlap=0).split(_doc(text))
    assert [c.text for c in chunks] == [
        "First sentence here.", "Second sentence here.", "Third paragraph sentence one.", "And two.",
    ]


def test_recursive_splits_chinese_sentences_on_full_width_punctuation():
    text = "全职员工每年享有二十天带薪年假。病假每年最多十五天！需要证明吗？需要。"
    chunks = RecursiveChunker(chunk_size=16, chunk_overlap=0).split(_doc(text))
    assert all(c.text[-1] in "。！？" for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_recursive_overlap_repeats_trailing_sentences():
    text = " ".join(f"Sentence number {i} ends." for i in range(12))
    chunks = RecursiveChunker(chunk_size=20, chunk_overlap=8).split(_doc(text))
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # the next chunk starts inside the previous one
        assert a.text.endswith(".") and b.text.startswith("Sentence")


def test_a_word_longer_than_the_budget_is_cut_on_token_boundaries():
    text = "x" * 10 + " " + "一二三四五六七八九十" * 5
    chunks = RecursiveChunker(chunk_size=12, chunk_overlap=0).split(_doc(text))
    assert all(_tokens(c.text) <= 12 for c in chunks)
    assert "".join(c.text.replace(" ", "") for c in chunks) == text.replace(" ", "")


def test_markdown_chunks_never_span_two_sections_and_carry_the_heading_path():
    blocks = [
        Block(type=BlockType.HEADING, text="Guide", level=1, heading_path=["Guide"]),
        Block(type=BlockType.PARAGRAPH, text="Intro text.", heading_path=["Guide"]),
        Block(type=BlockType.HEADING, text="Install", level=2, heading_path=["Guide", "Install"]),
        Block(type=BlockType.PARAGRAPH, text="Run the installer. " * 30, heading_path=["Guide", "Install"]),
        Block(type=BlockType.HEADING, text="Usage", level=2, heading_path=["Guide", "Usage"]),
        Block(type=BlockType.PARAGRAPH, text="Call it.", heading_path=["Guide", "Usage"]),
    ]
    doc = Document.assemble(blocks, source="g.md", source_type="md", author="Ann")
    chunks = MarkdownChunker(chunk_size=40, chunk_overlap=5).split(doc)
    headings = [b for b in doc.blocks if b.type == BlockType.HEADING]
    for c in chunks:
        assert not any(c.start < h.start < c.end for h in headings)
        assert doc.text[c.start : c.end] == c.text
        assert c.meta.author == "Ann" and c.meta.source_type == "md"
    assert chunks[0].meta.heading_path == ["Guide"]
    install = [c for c in chunks if "installer" in c.text]
    assert len(install) > 1 and all(c.meta.heading_path == ["Guide", "Install"] for c in install)
    assert all(c.meta.section_title == "Install" for c in install)
    assert chunks[-1].text == "Usage\n\nCall it." and chunks[-1].meta.section_title == "Usage"


def test_page_numbers_come_from_the_block_where_the_chunk_starts():
    blocks = [Block(type=BlockType.PARAGRAPH, text=f"Page {p} text. " * 5, page_number=p) for p in (1, 2, 3)]
    doc = Document.assemble(blocks, source="p.pdf", source_type="pdf")
    chunks = RecursiveChunker(chunk_size=15, chunk_overlap=0).split(doc)
    for c in chunks:
        assert c.meta.page_number == int(c.text.split()[1])


def test_empty_document_gives_no_chunks():
    doc = Document.assemble([], source="e.txt", source_type="txt")
    for name in ("token", "recursive", "markdown"):
        assert make_chunker(name, chunk_size=10, chunk_overlap=0).split(doc) == []


def test_chunker_settings_are_validated_eagerly():
    with pytest.raises(ConfigError, match="chunk_overlap .* must be smaller than chunk_size"):
        RecursiveChunker(chunk_size=10, chunk_overlap=10)
    with pytest.raises(ConfigError, match="chunk_size must be greater than 0"):
        TokenChunker(chunk_size=0, chunk_overlap=0)
    with pytest.raises(ConfigError, match="unknown chunker 'semantik'"):
        chunker_name_for("semantik", "txt")


def test_auto_picks_markdown_for_structured_formats():
    assert chunker_name_for("auto", "md") == "markdown"
    assert chunker_name_for("auto", "pdf") == "recursive"
    assert chunker_name_for("token", "md") == "token"


@pytest.mark.parametrize("chunker_cls", [TokenChunker, RecursiveChunker, MarkdownChunker])
def test_offsets_map_back_on_chinese_text(chunker_cls):
    sentences = ["全职员工每年享有二十天带薪年假。", "病假每年最多十五天，需要医院证明！", "加班需要提前申请吗？",
                 "需要经理批准；", "报销在三十天内完成。"]
    text = "\n\n".join("".join(sentences[i:] + sentences[:i]) for i in range(len(sentences)))
    doc = Document.assemble([Block(type=BlockType.PARAGRAPH, text=p) for p in text.split("\n\n")],
                            source="zh.txt", source_type="txt", language="zh")
    chunks = chunker_cls(chunk_size=30, chunk_overlap=5).split(doc)
    assert len(chunks) > 3
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert _tokens(c.text) <= 30
        assert c.meta.tags  # keywords come from jieba for Chinese chunks
