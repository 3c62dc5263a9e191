"""One folder of every common format ingested into a real knowledge base: each file parsed, chunked by the
strategy that suits it, findable by search — and the per-file limits from the settings reach the parsers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragtune.kb import KnowledgeBase

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

LEGAL = "\n".join(
    ["数据安全管理办法", "第一章 总则"]
    + [f"第{n}条 {text}" for n, text in zip(
        "一二三四五",
        ["为了规范数据处理活动，保障数据安全，制定本办法。", "本办法适用于公司内部的数据处理活动。",
         "员工离职时，其账号须在二十四小时内停用。", "重要数据的备份每周至少进行一次。",
         "本办法自发布之日起施行。"], strict=True)]
)


def _pptx(path: Path) -> None:
    from pptx import Presentation

    deck = Presentation()
    for title, body in (("Quarterly review", "Revenue grew in the northern region."),
                        ("Hiring plan", "The platform team hires seven site reliability engineers.")):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(str(path))


def _xlsx(path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Warehouses"
    sheet.append(["Warehouse", "City", "Forklifts"])
    sheet.append(["North depot", "Tromsø", 12])
    sheet.append(["South depot", "Valletta", 4])
    book.save(str(path))


def _docx(path: Path) -> None:
    from docx import Document

    doc = Document()
    doc.add_heading("Travel policy", level=1)
    doc.add_paragraph("Economy class is booked for flights shorter than six hours.")
    doc.save(str(path))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    _pptx(root / "review.pptx")
    _xlsx(root / "warehouses.xlsx")
    _docx(root / "travel.docx")
    (root / "regulation.txt").write_text(LEGAL, encoding="utf-8")
    (root / "teams.csv").write_text("team,lead\nPayments,Amara Okafor\nSearch,Lin Wei\n", encoding="gbk")
    shutil.copy(FIXTURES / "qa" / "faq.json", root / "faq.json")
    shutil.copy(FIXTURES / "code" / "inventory.py", root / "inventory.py")
    return root


@pytest.mark.integration
def test_every_format_is_chunked_by_its_strategy_and_found(folder: Path, tmp_path: Path, embedder) -> None:
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder) as kb:
        report = kb.ingest(folder)
        assert not report.failed, report
        chunkers = {Path(r.uri).name: r.metadata.get("chunker") for r in kb.documents()}
        assert chunkers == {"review.pptx": "slide", "warehouses.xlsx": "table", "travel.docx": "markdown",
                            "regulation.txt": "legal", "teams.csv": "table", "faq.json": "qa",
                            "inventory.py": "code"}

        def top(query: str, source: str):
            hits = kb.search(query, k=5)
            return next(h for h in hits if h.source.endswith(source))

        slide = top("how many site reliability engineers are hired", "review.pptx")
        assert slide.meta.page_number == 2 and "seven" in slide.text
        sheet = top("forklifts at the North depot in Tromsø", "warehouses.xlsx")
        assert "| North depot | Tromsø | 12 |" in sheet.text
        article = top("员工离职后账号多久停用", "regulation.txt")
        assert article.meta.legal_clause_id == "第三条" and article.text.startswith("第三条")
        assert top("who leads the Search team", "teams.csv").text.count("Lin Wei") == 1
        answer = top("How do I reset my password?", "faq.json")
        assert answer.meta.section_title == "How do I reset my password?" and "24 hours" in answer.text
        assert top("Economy class flights", "travel.docx").meta.section_title == "Travel policy"
        assert all(h.meta.tags for h in kb.search("depot", k=3))


@pytest.mark.integration
def test_limits_from_the_settings_fail_one_file_and_keep_the_rest(folder: Path, tmp_path: Path, embedder) -> None:
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder, max_pages=1,
                            max_archive_members=5) as kb:
        report = kb.ingest(folder)
        failed = {Path(r.uri).name: r.error for r in kb.documents() if r.status == "failed"}
        # Office files are ZIPs of many parts; with room for five, each is refused with the limit to raise.
        assert set(failed) == {"review.pptx", "warehouses.xlsx", "travel.docx"}
        assert all("max_archive_members" in error for error in failed.values()), failed
        assert len(report.failed) == 3 and kb.search("第三条 账号停用", k=1)[0].source.endswith("regulation.txt")
    with KnowledgeBase.open(tmp_path / "kb2", create=True, embedder=embedder, max_pages=1) as kb:
        kb.ingest(folder)
        slides = [h for h in kb.search("site reliability engineers hiring plan", k=10)
                  if h.source.endswith("review.pptx")]
        assert slides and all("seven" not in h.text for h in slides)  # slide 2 is past max_pages
