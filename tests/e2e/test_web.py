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

                # Count how often the answer's text changes: streamed answers change many times.
                page.evaluate("""() => { window.__updates = 0; new MutationObserver((ms) => {
                    for (const m of ms) {
                        const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
                        if (el && el.closest('.answer-text')) window.__updates++;
                    }
                }).observe(document.getElementById('messages'),
                           {subtree: true, childList: true, characterData: true}); }""")
                page.get_by_label("Your question").fill("What is the refund window for enterprise plans?")
                page.get_by_role("button", name="Ask").click()
                source = page.locator("a.source-link").first
                expect(source).to_be_visible(timeout=60_000)
                expect(page.locator(".answer-text").first).to_contain_text("45")
                assert page.evaluate("window.__updates") > 3
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
    assert sorted(p.name for p in shots.glob("web_*.png")) == [
        "web_answer.png", "web_feedback.png", "web_source.png", "web_upload.png", "web_zh.png"]
