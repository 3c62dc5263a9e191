"""Keyword tags: jieba TF-IDF for Chinese, TF-IDF over a document's chunks for English, filled for every chunk."""

from __future__ import annotations

import pytest

from ragtune.chunk import RecursiveChunker, extract_tags
from ragtune.chunk.tags import ENGLISH_STOPWORDS
from ragtune.types import Block, BlockType, Document

pytestmark = pytest.mark.unit

EN = [
    "Rotate the API keys every 90 days. Keys are stored in the vault, and the vault encrypts every key with AES.",
    "The GPU cluster runs training jobs. Each job requests GPU memory, and the scheduler places jobs on nodes.",
    "Backups of the vault run nightly. A backup is kept for thirty days and restored with the backup tool.",
]
ZH = [
    "全职员工每年享有二十天带薪年假，病假每年最多十五天。员工需要提前两周向直属经理提交年假申请。",
    "报销单据应当在费用发生后三十天内提交财务部门审核，逾期的报销申请将不予受理。",
]


def test_english_tags_name_the_topic_and_skip_stopwords():
    tags = extract_tags(EN)
    assert all(len(t) == 5 for t in tags)
    assert {"keys", "API"} <= set(tags[0]) or {"keys", "vault"} <= set(tags[0])
    assert "GPU" in tags[1] and "jobs" in tags[1]  # acronyms keep their capitals
    assert "backup" in tags[2]
    assert not any(t.lower() in ENGLISH_STOPWORDS for ts in tags for t in ts)
    assert not any(t.isdigit() for ts in tags for t in ts)


def test_a_word_shared_by_every_chunk_ranks_below_distinctive_ones():
    texts = [f"Printer setup: {topic} {topic} for the printer." for topic in ("toner", "paper", "network", "driver")]
    tags = extract_tags(texts)
    for topic, chunk_tags in zip(("toner", "paper", "network", "driver"), tags, strict=True):
        # "printer" is as frequent in each chunk as the topic, but it is in all of them.
        assert chunk_tags[0] == topic
        assert chunk_tags.index("printer") > 0


def test_chinese_tags_come_from_jieba():
    tags = extract_tags(ZH, k=5)
    assert "员工" in tags[0] and "病假" in tags[0]
    assert "报销" in tags[1]
    assert all(len(t) >= 2 for ts in tags for t in ts)  # no single characters such as 的


def test_k_zero_and_empty_input():
    assert extract_tags(EN, k=0) == [[], [], []]
    assert extract_tags([]) == []
    assert extract_tags(["", "12 34 56"]) == [[], []]


def test_every_chunk_gets_tags():
    blocks = [Block(type=BlockType.PARAGRAPH, text=t) for t in EN + ZH]
    doc = Document.assemble(blocks, source="mixed.txt", source_type="txt")
    chunks = RecursiveChunker(chunk_size=40, chunk_overlap=0).split(doc)
    assert len(chunks) >= 5
    assert all(c.meta.tags for c in chunks)
    assert any("病假" in c.meta.tags for c in chunks)
