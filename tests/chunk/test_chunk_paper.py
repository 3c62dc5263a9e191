"""PaperChunker: sections from PDF-like text lines or from heading blocks, with section titles and paths."""

from __future__ import annotations

import pytest

from ragtune.chunk import PaperChunker, RegexTokenCounter
from ragtune.chunk.paper import looks_like_paper
from ragtune.types import Block, BlockType, Document

pytestmark = pytest.mark.unit

# Text as a PDF parser gives it: paragraphs, no heading blocks, a numbered list and a table inside sections.
EN_PAPER = """Dense and Sparse Retrieval for Technical Manuals
Ann Lee, Bo Chen
Example University

Abstract—We study retrieval over technical manuals. A hybrid of dense and sparse retrieval beats either alone.

1 Introduction
Engineers search manuals every day. Keyword search misses paraphrases, while dense search misses part numbers.
Our contributions are:
1. We collect a benchmark of manual questions.
2. We compare retrievers on it.

2 Method
We fuse the two rankings with reciprocal rank fusion.

2.1 Training Setup
The dense encoder is fine-tuned for 3 epochs on 8 GPUs.
Model
Recall@10

2.2 Inference
Queries are encoded once and searched in both indexes.

3 Experiments
Table 1 reports recall on the benchmark. The hybrid retriever wins on every subset.

4 Conclusion
Hybrid retrieval is a strong default for manuals.

References
[1] S. Robertson and H. Zaragoza. The probabilistic relevance framework: BM25 and beyond. 2009.
[2] V. Karpukhin et al. Dense passage retrieval for open-domain question answering. 2020.
"""

ZH_PAPER = """基于检索增强生成的企业问答系统
张三 李四

摘要：本文提出一种面向企业文档的检索增强问答方法，在内部数据集上显著提升了回答准确率。
关键词：检索增强；问答系统

一、引言
企业文档数量庞大，员工难以快速找到答案。

二、方法
我们结合稠密检索与稀疏检索。

2.1 实验设置
我们在八张显卡上训练三个轮次。

三、结论
检索增强生成适合企业问答。

参考文献
[1] 王五. 信息检索导论. 2020.
"""


def _pdf_doc(text: str) -> Document:
    blocks = [Block(type=BlockType.PARAGRAPH, text=p, page_number=1) for p in text.split("\n\n")]
    return Document.assemble(blocks, source="paper.pdf", source_type="pdf")


class TestPaperChunker:
    def test_pdf_text_is_split_at_its_sections(self):
        doc = _pdf_doc(EN_PAPER)
        chunks = PaperChunker(chunk_size=256, chunk_overlap=0).split(doc)
        assert [c.meta.section_title for c in chunks] == [
            None, "Abstract", "1 Introduction", "2 Method", "2.1 Training Setup", "2.2 Inference",
            "3 Experiments", "4 Conclusion", "References",
        ]
        for chunk in chunks:
            assert doc.text[chunk.start : chunk.end] == chunk.text
        setup = chunks[4]
        assert setup.meta.heading_path == ["2 Method", "2.1 Training Setup"]
        # A table's column labels ("Model") and numbered list items are not headings.
        assert "Model\nRecall@10" in setup.text
        assert "1. We collect a benchmark" in chunks[2].text
        assert chunks[0].text.startswith("Dense and Sparse Retrieval")

    def test_chinese_sections_and_numbering(self):
        doc = _pdf_doc(ZH_PAPER)
        chunks = PaperChunker(chunk_size=256, chunk_overlap=0).split(doc)
        titles = [c.meta.section_title for c in chunks]
        assert titles == [None, "摘要", "一、引言", "二、方法", "2.1 实验设置", "三、结论", "参考文献"]
        assert chunks[4].meta.heading_path == ["二、方法", "2.1 实验设置"]
        assert "关键词" in chunks[1].text  # keywords stay with the abstract

    def test_oversized_sections_are_split_within_the_section(self):
        long_intro = " ".join(f"Sentence {i} explains why manuals are hard to search." for i in range(60))
        text = EN_PAPER.replace("Engineers search manuals every day.", long_intro)
        doc = _pdf_doc(text)
        chunks = PaperChunker(chunk_size=60, chunk_overlap=10).split(doc)
        intro = [c for c in chunks if c.meta.section_title == "1 Introduction"]
        assert len(intro) > 5
        assert all(len(RegexTokenCounter().spans(c.text)) <= 60 for c in chunks)
        method_start = doc.text.index("2 Method")
        assert all(c.end <= method_start for c in intro)  # no introduction chunk runs into the method section

    def test_heading_blocks_from_the_parser_are_used(self):
        blocks = [
            Block(type=BlockType.HEADING, text="Abstract", level=2, heading_path=["Abstract"]),
            Block(type=BlockType.PARAGRAPH, text="We study retrieval.", heading_path=["Abstract"]),
            Block(type=BlockType.HEADING, text="Background and Motivation", level=2,
                  heading_path=["Background and Motivation"]),
            Block(type=BlockType.PARAGRAPH, text="Search is hard.", heading_path=["Background and Motivation"]),
            Block(type=BlockType.HEADING, text="Our Approach", level=2, heading_path=["Our Approach"]),
            Block(type=BlockType.PARAGRAPH, text="We fuse rankings.", heading_path=["Our Approach"]),
        ]
        doc = Document.assemble(blocks, source="p.docx", source_type="docx")
        chunks = PaperChunker(chunk_size=256, chunk_overlap=0).split(doc)
        # Section names the line patterns would not know are still sections, because the parser says so.
        assert [c.meta.section_title for c in chunks] == ["Abstract", "Background and Motivation", "Our Approach"]
        assert chunks[1].text == "Background and Motivation\n\nSearch is hard."

    def test_looks_like_paper(self):
        assert looks_like_paper(EN_PAPER)
        assert looks_like_paper(ZH_PAPER)
        assert not looks_like_paper("Introduction\nThis manual explains the printer.\nReferences\nNone.")
        assert not looks_like_paper("An abstract idea.\nWe introduce nothing.")
