"""The web page in headless Chromium: upload a document, watch the job finish, ask, see streamed text and a
source, click 👍, switch to Chinese. Screenshots go to the test's temporary folder, or to $RAGTUNE_SCREENSHOTS
(``bench/web_screenshots.py`` publishes them to bench/results/web_*.png)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from harness import EXAMPLES, fake_llm_server, running_server  # noqa: E402

from ragtune.feedback import FeedbackStore  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]


def test_upload_ask_stream_source_and_feedback_in_the_browser(tmp_path, embedder):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("RAGTUNE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "kbs"
    root.mkdir()
    for llm_url in fake_llm_server():
        for server in running_server(root, embedder, llm_url):
            with server.client("admin") as http:
                assert http.post("/v1/kbs", json={"name": "handbook"}).status_code == 201
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                    "--no-first-run"])
                page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="en-US")
                page.goto(server.url + "/")
                page.get_by_label("API key").fill(server.keys["admin"])
                page.get_by_role("button", name="Use key").click()
                expect(page.get_by_label("Pick a knowledge base")).to_have_value("handbook")

                page.get_by_label("Files (PDF, Word, HTML, Markdown, text, zip)").set_input_files(
                    [EXAMPLES / "handbook" / "refunds.md", EXAMPLES / "handbook" / "travel.txt"])
                page.get_by_role("button", name="Upload").click()
                expect(page.locator("#jobs li").first).to_have_attribute("data-status", "done", timeout=60_000)
                expect(page.locator("#documents li")).to_have_count(2)
                page.screenshot(path=shots / "web_upload.png")

                # Record every text the answer shows: only verified text is streamed, so each is a prefix of
                # the final answer (never a draft that is taken back).
                page.evaluate("""() => { window.__texts = []; new MutationObserver((ms) => {
                    for (const m of ms) {
                        const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
                        const box = el && el.closest('.answer-text');
                        if (box) window.__texts.push(box.textContent);
                    }
                }).observe(document.getElementById('messages'),
                           {subtree: true, childList: true, characterData: true}); }""")
                page.get_by_label("Your question").fill("What is the refund window for enterprise plans?")
                page.get_by_role("button", name="Ask").click()
                source = page.locator("a.source-link").first
                expect(source).to_be_visible(timeout=60_000)
                expect(page.locator(".answer-text").first).to_contain_text("45")
                final = page.locator(".answer-text").first.text_content()
                shown = [t for t in page.evaluate("window.__texts") if t not in ("", "…")]
                assert shown and all(final.startswith(t) for t in shown), shown
                expect(source).to_contain_text("refunds.md")
                page.screenshot(path=shots / "web_answer.png")

                source.click()
                dialog = page.locator("#source-dialog")
                expect(dialog).to_be_visible()
                expect(dialog.locator("blockquote")).to_contain_text("45")
                page.screenshot(path=shots / "web_source.png")
                dialog.get_by_role("button", name="Close").click()

                page.get_by_role("button", name="Helpful", exact=True).click()
                expect(page.locator(".thanks")).to_be_visible()
                expect(page.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
                page.screenshot(path=shots / "web_feedback.png")

                page.get_by_label("Language").select_option("zh")
                expect(page.get_by_role("button", name="提问")).to_be_visible()
                page.screenshot(path=shots / "web_zh.png")
                browser.close()

            answer_id = None
            with FeedbackStore(root / "handbook") as store:
                records = list(store.records())
                answer_id = records[0].answer_id
                assert [r.rating for r in records] == ["up"] and "45" in records[0].answer
            assert answer_id
    assert {"web_answer.png", "web_feedback.png", "web_source.png", "web_upload.png", "web_zh.png"} <= {
        p.name for p in shots.glob("web_*.png")}


def test_an_extractive_answer_and_grouped_sources_in_the_browser(tmp_path, embedder):
    """A knowledge base set to quote its sources: the page marks the answer as quoted and lists each document
    once, with its sections."""
    from playwright.sync_api import expect, sync_playwright

    from ragtune.kb import KnowledgeBase

    shots = Path(os.environ.get("RAGTUNE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "kbs"
    with KnowledgeBase.open(root / "handbook", create=True, embedder=embedder) as kb:
        assert kb.ingest(EXAMPLES / "handbook").ok
    (root / "handbook" / "ragtune.toml").write_text('answer_mode = "extractive"\n')
    for llm_url in fake_llm_server():
        for server in running_server(root, embedder, llm_url):
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="en-US")
                page.goto(server.url + "/")
                page.get_by_label("API key").fill(server.keys["admin"])
                page.get_by_role("button", name="Use key").click()
                expect(page.get_by_label("Pick a knowledge base")).to_have_value("handbook")
                page.get_by_label("Your question").fill("What is the refund window for enterprise plans?")
                page.get_by_role("button", name="Ask").click()
                expect(page.locator(".answer-text").first).to_have_text(
                    "“Enterprise customers have a refund window of 45 days from the invoice date.” [1]",
                    timeout=60_000)
                expect(page.locator(".mode").first).to_have_text("Quoted from the sources")
                item = page.locator(".sources li").first
                expect(item.locator("a.source-link")).to_contain_text("refunds.md")
                expect(item).to_contain_text("Refund policy › Enterprise plans")
                page.screenshot(path=shots / "web_extractive.png")
                browser.close()
