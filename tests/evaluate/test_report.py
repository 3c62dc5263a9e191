"""The HTML report: self-contained and escaped (unit), and rendered in headless Chromium with bars, the
comparison's confidence intervals, highlighted unsupported claims, sources and a working filter (e2e)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ragtune.evaluate import evaluate_rag
from ragtune.evaluate.report import render_report, write_report

CHROMIUM = Path("/usr/bin/chromium")
REFUND = "Enterprise customers have a refund window of 45 days from the invoice date."

ROWS = [
    {"id": "good", "type": "Single", "user_input": "What is the refund window for enterprise customers?",
     "retrieved_contexts": [REFUND], "response": "Enterprise customers have a refund window of 45 days [1].",
     "reference": "45 days", "retrieved_context_ids": ["c1"], "reference_context_ids": ["c1"]},
    {"id": "invented", "type": "Single", "user_input": "What is the refund window for enterprise customers?",
     "retrieved_contexts": [REFUND], "response": "Refunds are paid in Bitcoin by the moon office [1].",
     "reference": "45 days", "retrieved_context_ids": ["c2"], "reference_context_ids": ["c1"]},
    {"id": "refusal", "type": "Null", "user_input": "Who founded the company <script>alert(1)</script>?",
     "retrieved_contexts": [REFUND], "response": "I don't know.", "answerable": False},
]


@pytest.fixture(scope="module")
def result() -> dict:
    baseline = evaluate_rag([{**r, "response": "I don't know."} if r["id"] == "good" else r for r in ROWS],
                            by="type", embedder=_Flat())
    return evaluate_rag(ROWS, by="type", compare=baseline, embedder=_Flat())


class _Flat:
    """Every text the same vector: the report, not embedding quality, is under test here."""

    name = "flat"

    def encode_queries(self, texts):
        import numpy as np

        return np.ones((len(texts), 4), dtype=np.float32)

    encode_documents = encode_queries


@pytest.mark.unit
def test_self_contained_and_escaped(result: dict) -> None:
    html = render_report(result)
    assert not re.search(r"""(?:src|href)=["']?(?:https?:|//)""", html)  # nothing fetched from anywhere
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("class='bar'") == len(result["metrics"])
    assert "id='comparison-table'" in html and "By type" in html


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_rendered_in_chromium(result: dict, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    report = write_report(result, tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        expect(page.locator("#metric-bars g.bar")).to_have_count(len(result["metrics"]))
        faithfulness_bar = page.locator("#metric-bars g.bar[data-metric='faithfulness'] rect")
        assert float(faithfulness_bar.get_attribute("width")) == pytest.approx(result["metrics"]["faithfulness"] * 560,
                                                                               abs=0.1)
        expect(page.locator("#comparison-table tbody tr")).to_have_count(len(result["comparison"]["metrics"]))
        expect(page.locator("#comparison-plot g.ci")).to_have_count(len(result["comparison"]["metrics"]))
        expect(page.locator("#items tbody tr")).to_have_count(3)

        bad = page.locator("tr[data-id='invented'] .claim.unsupported")
        expect(bad).to_have_count(1)
        expect(bad).to_contain_text("Bitcoin")
        assert page.evaluate("getComputedStyle(document.querySelector('.claim.unsupported')).backgroundColor") \
            != "rgba(0, 0, 0, 0)"
        expect(page.locator("tr[data-id='good'] .claim.supported")).to_have_count(1)

        page.locator("tr[data-id='good'] details summary").click()
        expect(page.locator("tr[data-id='good'] blockquote")).to_contain_text("45 days")
        page.screenshot(path=str(tmp_path / "report_full.png"), full_page=True)

        page.get_by_label("only items with unsupported claims").check()
        expect(page.locator("#items tbody tr:visible")).to_have_count(1)
        expect(page.locator("#shown")).to_have_text("1")
        page.get_by_label("only items with unsupported claims").uncheck()
        page.get_by_label("Filter").fill("founded")
        expect(page.locator("#items tbody tr:visible")).to_have_count(1)
        page.screenshot(path=str(tmp_path / "report_filtered.png"))
        browser.close()
    assert requests == [report.as_uri()]  # the page loaded nothing but itself
    assert (tmp_path / "report_full.png").stat().st_size > 10_000
