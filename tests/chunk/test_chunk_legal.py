"""LegalChunker: one chunk per article with its clause id, chapters as heading path, references never split."""

from __future__ import annotations

import pytest

from ragtune.chunk import LegalChunker, RegexTokenCounter
from ragtune.chunk.legal import count_clause_markers
from ragtune.types import Block, BlockType, Document

pytestmark = pytest.mark.unit

ZH_LAW = """员工休假管理办法

（2024年1月1日起施行）

第一章 总则

第一条　为了规范公司员工休假管理，保障员工合法权益，根据《中华人民共和国劳动法》制定本办法。
第二条　本办法适用于与公司签订劳动合同的全体员工。实习人员参照本办法
第一条规定的原则执行。
第三条　人力资源部负责本办法的解释和监督执行。

第二章 年休假

第四条　员工累计工作已满一年不满十年的，年休假五天；已满十年不满二十年的，年休假十天。
第五条　年休假一般不跨年度安排。确因工作需要跨年度安排的，应当经部门负责人批准，并依照本办法
第四条、第六条的规定办理。
第六条　员工申请年休假，应当提前五个工作日通过人力资源系统提交申请。
第七条　员工在年休假期间享受与正常工作期间相同的工资收入。

第三章 病假与事假

第八条　员工因病需要休假的，应当提供二级以上医院出具的诊断证明。
第九条　事假为无薪假期，每年累计不超过十五天。
第十条 本办法自发布之日起施行。
"""

EN_LAW = """DATA PROTECTION AGREEMENT

This Agreement is entered into by the parties named below. Terms used but not defined here have the
meaning given in the Master Services Agreement.

CHAPTER I GENERAL PROVISIONS

Article 1. Subject matter
This Agreement governs the processing of personal data by the Processor on behalf of the Controller.

Article 2 Definitions
For the purposes of this Agreement, "personal data" has the meaning given in Article 4 of the GDPR, and
"processing" is as defined in Article 3.

Article 3 — Scope
This Agreement applies to all processing described in Annex I. The obligations set out in
Article 5 of this Agreement apply to every sub-processor.

Article 4: Duration
This Agreement remains in force for as long as the Processor processes personal data.

CHAPTER II OBLIGATIONS

Article 5
Obligations of the Processor
The Processor shall process personal data only on documented instructions from the Controller.

Article 6 Confidentiality
The Processor shall ensure that persons authorised to process personal data are bound by confidentiality.

Article 7 Security
The Processor shall implement the measures listed in Annex II, as required under
Article 32 of the GDPR.

Article 8 Sub-processors
The Processor shall not engage another processor without prior written authorisation.

Article 9 Audits
The Controller may audit the Processor once per year.

Article 10 Termination
Either party may terminate this Agreement with thirty days' written notice.
"""


def _doc(text: str, source_type: str = "txt") -> Document:
    blocks = [Block(type=BlockType.PARAGRAPH, text=p) for p in text.split("\n\n")]
    return Document.assemble(blocks, source=f"law.{source_type}", source_type=source_type)


ZH_IDS = ["第一条", "第二条", "第三条", "第四条", "第五条", "第六条", "第七条", "第八条", "第九条", "第十条"]


class TestLegalChunker:
    def test_chinese_law_splits_into_exactly_its_articles(self):
        doc = _doc(ZH_LAW)
        chunks = LegalChunker(chunk_size=512, chunk_overlap=0).split(doc)
        articles = [c for c in chunks if c.meta.legal_clause_id]
        assert [c.meta.legal_clause_id for c in articles] == ZH_IDS
        for chunk in chunks:
            assert doc.text[chunk.start : chunk.end] == chunk.text
        for chunk, clause in zip(articles, ZH_IDS, strict=True):
            # Each chunk holds its own article and the start of no other.
            assert count_clause_markers(chunk.text) == 1
            assert any(line.startswith(clause) for line in chunk.text.splitlines())

    def test_chinese_chapters_form_the_heading_path(self):
        chunks = LegalChunker(chunk_size=512, chunk_overlap=0).split(_doc(ZH_LAW))
        by_id = {c.meta.legal_clause_id: c for c in chunks if c.meta.legal_clause_id}
        assert by_id["第一条"].meta.heading_path == ["第一章 总则", "第一条"]
        assert by_id["第五条"].meta.heading_path == ["第二章 年休假", "第五条"]
        assert by_id["第十条"].meta.heading_path == ["第三章 病假与事假", "第十条"]
        assert by_id["第五条"].meta.section_title == "第五条"
        # The chapter heading opens the chunk of the article right under it instead of being a chunk alone.
        assert by_id["第四条"].text.startswith("第二章 年休假")

    def test_references_at_line_starts_do_not_start_articles(self):
        chunks = LegalChunker(chunk_size=512, chunk_overlap=0).split(_doc(ZH_LAW))
        by_id = {c.meta.legal_clause_id: c for c in chunks if c.meta.legal_clause_id}
        assert "第一条规定的原则执行" in by_id["第二条"].text
        assert "第四条、第六条的规定办理" in by_id["第五条"].text

    def test_preamble_is_its_own_chunk_without_a_clause_id(self):
        chunks = LegalChunker(chunk_size=512, chunk_overlap=0).split(_doc(ZH_LAW))
        assert chunks[0].meta.legal_clause_id is None
        assert chunks[0].text.startswith("员工休假管理办法") and "第一条" not in chunks[0].text

    def test_english_agreement_splits_into_exactly_its_articles(self):
        doc = _doc(EN_LAW)
        chunks = LegalChunker(chunk_size=512, chunk_overlap=0).split(doc)
        articles = [c for c in chunks if c.meta.legal_clause_id]
        assert [c.meta.legal_clause_id for c in articles] == [f"Article {n}" for n in range(1, 11)]
        by_id = {c.meta.legal_clause_id: c for c in articles}
        # In-text references, inside a line or wrapped onto the start of one, stay inside their article.
        assert '"processing" is as defined in Article 3.' in by_id["Article 2"].text
        assert "Article 5 of this Agreement apply" in by_id["Article 3"].text
        assert "Article 32 of the GDPR" in by_id["Article 7"].text
        assert by_id["Article 5"].meta.heading_path == ["CHAPTER II OBLIGATIONS", "Article 5"]
        assert by_id["Article 1"].meta.heading_path == ["CHAPTER I GENERAL PROVISIONS", "Article 1"]
        assert chunks[0].meta.legal_clause_id is None and "Master Services Agreement" in chunks[0].text
        for chunk in chunks:
            assert doc.text[chunk.start : chunk.end] == chunk.text

    def test_sections_paragraph_signs_and_clauses_get_their_ids(self):
        text = (
            "ARTICLE I\nOFFICES\nSection 1.1 Principal Office. The office is in Delaware.\n"
            "Section 1.2 Other Offices. Other offices may exist.\n"
            "ARTICLE II - SHAREHOLDERS\nSection 2.1 Meetings. Held yearly, subject to § 4.\n"
            "§ 3 Payment. Fees are paid monthly.\n§3a Interest. Late fees accrue.\nClause 7 Notices. In writing.\n"
        )
        chunks = LegalChunker(chunk_size=512, chunk_overlap=0).split(_doc(text))
        assert [c.meta.legal_clause_id for c in chunks] == [
            "Section 1.1", "Section 1.2", "Section 2.1", "§ 3", "§ 3a", "Clause 7",
        ]
        # An article whose body is only a title heads the sections under it.
        assert chunks[0].meta.heading_path == ["ARTICLE I OFFICES", "Section 1.1"]
        assert chunks[2].meta.heading_path == ["ARTICLE II - SHAREHOLDERS", "Section 2.1"]

    def test_an_overlong_article_is_split_into_pieces_that_keep_its_id(self):
        long_article = "第二条　" + "员工应当遵守公司的各项规章制度，按时完成工作任务。" * 30
        text = f"第一条　总则条款。\n{long_article}\n第三条　附则条款。"
        doc = _doc(text)
        chunks = LegalChunker(chunk_size=64, chunk_overlap=8).split(doc)
        ids = [c.meta.legal_clause_id for c in chunks]
        assert ids[0] == "第一条" and ids[-1] == "第三条"
        middle = [c for c in chunks if c.meta.legal_clause_id == "第二条"]
        assert len(middle) > 3
        assert all(len(RegexTokenCounter().spans(c.text)) <= 64 for c in middle)
        assert all(doc.text[c.start : c.end] == c.text for c in chunks)

    def test_digits_and_amendment_articles_are_recognised(self):
        text = "第1条 总则。\n第 2 条 定义。\n第一百二十条之一 新增条款。\n第一百二十一条 其他。"
        ids = [c.meta.legal_clause_id for c in LegalChunker(chunk_size=128, chunk_overlap=0).split(_doc(text))]
        assert ids == ["第1条", "第2条", "第一百二十条之一", "第一百二十一条"]

    def test_clause_markers_are_counted_only_at_line_starts(self):
        assert count_clause_markers(ZH_LAW) == 10
        assert count_clause_markers(EN_LAW) == 10
        assert count_clause_markers("As set out in Article 3 and Article 4, see Section 2 and § 5.") == 0
        assert count_clause_markers(EN_LAW, limit=3) == 3
