"""The web page in headless Chromium as a user drives it: upload, watch the job, ask, see streamed Markdown and a
source, rate it; first load, a missing or wrong key, a reader's page, deleting a document, chats kept per knowledge
base, a 390 px phone, 中文, and /docs offline. Screenshots go to the test's temporary folder, or to
$RAGTUNE_SCREENSHOTS (``bench/web_screenshots.py`` publishes them to bench/results/web_*.png)."""

from __future__ import annotations

import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from harness import EXAMPLES, RunningServer, fake_llm_server, running_server, wait_job  # noqa: E402

from ragtune.feedback import FeedbackStore  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run"]
QUESTION = "What is the refund window for enterprise plans?"
FILES_LABEL = "Files (PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB, Markdown, text, JSON, code, zip)"

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]


@pytest.fixture(scope="module")
def site(tmp_path_factory, embedder) -> Iterator[RunningServer]:
    """The real server with an empty 'handbook' and an 'other' knowledge base, answering with the fake LLM."""
    root = tmp_path_factory.mktemp("web-kbs")
    for llm_url in fake_llm_server():
        for server in running_server(root, embedder, llm_url):
            with server.client("admin") as http:
                for name in ("handbook", "other"):
                    assert http.post("/v1/kbs", json={"name": name}).status_code == 201
            yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("RAGTUNE_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def handbook(site: RunningServer) -> RunningServer:
    """The handbook KB with refunds.md and travel.txt ingested (uploaded through the API when a test needs them
    before the walkthrough has uploaded them through the page)."""
    with site.client("admin") as http:
        if not http.get("/v1/kbs/handbook/documents").json()["data"]:
            files = [("files", (name, (EXAMPLES / "handbook" / name).read_bytes(), "text/plain"))
                     for name in ("refunds.md", "travel.txt")]
            job = http.post("/v1/kbs/handbook/documents", files=files).json()["job"]
            assert wait_job(http, "handbook", job["id"])["status"] == "done"
    return site


def open_page(browser: Any, site: RunningServer, key: str | None, *, width: int = 1280, height: int = 860) -> Any:
    """A fresh browser context (its own localStorage) on the page, signed in with ``key`` (None: no key)."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US")
    page = context.new_page()
    page.goto(site.url + "/")
    if key is not None:
        page.get_by_label("API key").fill(site.keys[key])
        page.get_by_label("API key").press("Enter")
        expect(page.get_by_label("Pick a knowledge base")).to_have_value("handbook")
    return page


def ask(page: Any, question: str = QUESTION) -> Any:
    from playwright.sync_api import expect

    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator("#messages li.assistant").last
    expect(answer.locator("a.source-link").first).to_be_visible(timeout=60_000)
    return answer


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def no_horizontal_overflow(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_upload_ask_stream_source_and_feedback_in_the_browser(site, browser, shots):
    from playwright.sync_api import expect

    page = open_page(browser, site, "admin")
    page.get_by_label(FILES_LABEL).set_input_files(
        [EXAMPLES / "handbook" / "refunds.md", EXAMPLES / "handbook" / "travel.txt"])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#jobs li").first).to_have_attribute("data-status", "done", timeout=60_000)
    documents = page.locator("#documents li")
    expect(documents).to_have_count(2)
    expect(documents.filter(has_text="refunds.md")).to_contain_text("4 chunks")
    expect(documents.filter(has_text="travel.txt")).to_contain_text("travel.txt — 1 chunk")
    expect(documents.filter(has_text="travel.txt")).not_to_contain_text("chunks")
    page.screenshot(path=shots / "web_upload.png")

    # Record every text the answer shows: only verified text is streamed, so each is a prefix of the final
    # answer (never a draft that is taken back).
    page.evaluate("""() => { window.__texts = []; new MutationObserver((ms) => {
        for (const m of ms) {
            const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
            const box = el && el.closest('.answer-text');
            if (box) window.__texts.push(box.textContent);
        }
    }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true}); }""")
    answer = ask(page)
    text = answer.locator(".answer-text")
    expect(text).to_contain_text("45")
    final = " ".join((text.text_content() or "").split())
    shown = [" ".join(t.split()) for t in page.evaluate("window.__texts")]
    shown = [t for t in shown if t and t != "…"]
    assert shown and all(final.startswith(t) for t in shown), shown
    expect(text.locator("p")).to_have_count(1)  # rendered as Markdown, not raw text
    expect(text.locator("a.cite")).to_have_text("[1]")  # a citation opens its source
    source = answer.locator("a.source-link").first
    expect(source).to_contain_text("refunds.md")
    page.screenshot(path=shots / "web_answer.png")

    text.locator("a.cite").click()
    dialog = page.locator("#source-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("blockquote")).to_contain_text("45")
    page.screenshot(path=shots / "web_source.png")
    dialog.get_by_role("button", name="Close").click()

    helpful = page.get_by_role("button", name="Helpful", exact=True)
    # Icons are inline SVG, not emoji that need a font: the button has no text of its own.
    expect(helpful.locator("svg path")).to_have_count(1)
    assert helpful.inner_text().strip() == ""
    helpful.click()
    expect(page.locator(".thanks")).to_be_visible()
    expect(page.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=shots / "web_feedback.png")

    with FeedbackStore(site.root / "handbook") as store:
        records = list(store.records())
    assert [r.rating for r in records] == ["up"] and "45" in records[0].answer
    page.context.close()


def test_chinese_switches_every_text_including_lists_earlier_messages_and_server_errors(handbook, browser, shots):
    from playwright.sync_api import expect

    page = open_page(browser, handbook, "admin")
    expect(page.locator("#documents li")).to_have_count(2)
    expect(page.locator("#jobs li").first).to_have_attribute("data-status", "done", timeout=60_000)
    answer = ask(page)
    expect(answer.get_by_text("Sources", exact=True)).to_be_visible()

    page.get_by_label("Language").select_option("zh")
    expect(page.get_by_role("button", name="提问")).to_be_visible()
    expect(page.locator("#jobs li").first).to_contain_text("完成")
    expect(page.locator("#documents")).to_contain_text("1 个片段")
    expect(page.locator("#documents")).not_to_contain_text("chunk")
    expect(page.locator("#documents button.delete").first).to_have_text("删除")
    expect(answer.get_by_text("来源", exact=True)).to_be_visible()  # an earlier message, re-rendered
    expect(answer.get_by_role("button", name="有帮助")).to_be_visible()
    expect(page.get_by_label("文件（PDF、Word、PowerPoint、Excel、CSV、HTML、EPUB、Markdown、文本、JSON、代码、zip）")).to_be_visible()
    page.screenshot(path=shots / "web_zh.png")

    # A server error in Chinese: a key the server does not know.
    page.get_by_label("API 密钥").fill("rt_00000000_not-a-real-key")
    page.get_by_label("API 密钥").press("Enter")
    message = page.locator("#key-message")
    expect(message).to_contain_text("此 API 密钥无效")
    expect(message).not_to_contain_text("invalid")
    page.screenshot(path=shots / "web_zh_error.png")
    page.context.close()


def test_first_load_asks_for_a_key_enter_without_one_says_so_and_a_wrong_key_stays_shown(site, browser, shots):
    from playwright.sync_api import expect

    page = open_page(browser, site, None)
    message = page.locator("#key-message")
    expect(message).to_contain_text("Enter your API key to start")
    expect(message).not_to_have_class("key-message error")
    for raw in ("401", "Authorization", "missing API key"):
        expect(page.locator("body")).not_to_contain_text(raw)
    expect(page.get_by_label("API key")).to_be_focused()
    page.screenshot(path=shots / "web_first_load.png")

    page.get_by_label("API key").press("Enter")  # no key yet
    expect(message).to_have_text("Enter an API key first.")
    page.get_by_label("Your question").fill("anything")
    page.get_by_label("Your question").press("Enter")
    expect(message).to_have_text("Enter an API key first.")
    expect(page.locator("#messages > li")).to_have_count(0)

    page.get_by_label("API key").fill("rt_00000000_not-a-real-key")
    page.get_by_role("button", name="Use key").click()
    expect(message).to_contain_text("This API key was not accepted")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    time.sleep(5)  # the old page showed it in a toast for 4 s
    expect(message).to_be_visible()
    expect(message).to_contain_text("not accepted")
    page.screenshot(path=shots / "web_wrong_key.png")
    page.context.close()


def test_a_phone_has_no_horizontal_overflow_and_the_chat_comes_before_the_documents(handbook, browser, shots):
    from playwright.sync_api import expect

    page = open_page(browser, handbook, "admin", width=390, height=844)
    expect(page.locator("#documents li")).to_have_count(2)
    assert no_horizontal_overflow(page), page.evaluate("document.documentElement.scrollWidth")
    chat = page.locator("section.chat").bounding_box()
    documents = page.locator("section.manage").bounding_box()
    assert chat["y"] < documents["y"], "the chat sits right below the knowledge-base picker, above the documents"
    assert chat["y"] < 844, "the chat starts on the first screen"
    ask(page)
    assert no_horizontal_overflow(page)
    page.screenshot(path=shots / "web_phone.png", full_page=True)
    assert png_size(shots / "web_phone.png")[0] == 390

    page.get_by_label("Language").select_option("zh")
    expect(page.get_by_role("button", name="提问")).to_be_visible()
    assert no_horizontal_overflow(page)
    page.screenshot(path=shots / "web_phone_zh.png", full_page=True)
    assert png_size(shots / "web_phone_zh.png")[0] == 390
    page.context.close()


def test_readers_see_no_upload_or_create_and_writers_delete_documents(handbook, browser, shots, tmp_path):
    from playwright.sync_api import expect

    page = open_page(browser, handbook, "reader")
    expect(page.locator("#documents li")).to_have_count(2)
    expect(page.get_by_role("button", name="Upload")).to_be_hidden()
    expect(page.get_by_text("New knowledge base")).to_be_hidden()
    expect(page.locator("#documents button")).to_have_count(0)
    ask(page)  # a reader still asks
    page.screenshot(path=shots / "web_reader.png")
    page.context.close()

    note = tmp_path / "note.txt"
    note.write_text("Parking passes are handed out by reception on the first floor.\n")
    page = open_page(browser, handbook, "writer")
    expect(page.get_by_text("New knowledge base")).to_be_hidden()  # creating KBs needs an admin key for all
    page.get_by_label(FILES_LABEL).set_input_files([note])
    page.get_by_role("button", name="Upload").click()
    row = page.locator("#documents li").filter(has_text="note.txt")
    expect(row).to_contain_text("note.txt — 1 chunk", timeout=60_000)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete note.txt").click()
    expect(row).to_have_count(0)
    expect(page.locator("#documents li")).to_have_count(2)
    with handbook.client("admin") as http:
        assert "note.txt" not in [d["name"] for d in http.get("/v1/kbs/handbook/documents").json()["data"]]
    page.context.close()


def test_chats_are_kept_in_the_browser_per_knowledge_base(handbook, browser):
    from playwright.sync_api import expect

    page = open_page(browser, handbook, "admin")
    ask(page)
    page.reload()
    expect(page.get_by_label("Pick a knowledge base")).to_have_value("handbook")
    messages = page.locator("#messages > li")
    expect(messages).to_have_count(2)
    expect(messages.first).to_have_text(QUESTION)
    expect(messages.last.locator("a.source-link").first).to_contain_text("refunds.md")

    page.get_by_label("Pick a knowledge base").select_option("other")
    expect(messages).to_have_count(0)  # another knowledge base, another chat
    page.get_by_label("Pick a knowledge base").select_option("handbook")
    expect(messages).to_have_count(2)
    page.get_by_role("button", name="New chat").click()
    expect(messages).to_have_count(0)
    page.reload()
    expect(page.get_by_label("Pick a knowledge base")).to_have_value("handbook")
    expect(messages).to_have_count(0)
    page.context.close()


def test_answers_render_markdown_safely(site, browser):
    page = open_page(browser, site, None)
    rendered = page.evaluate("""() => {
        window.__pwned = false;
        const box = document.createElement('div');
        box.append(Markdown.render([
            'A: Refunds work like this [1]:',
            '',
            '- Starter and Team: **14 days**',
            '- Enterprise: *45 days* <img src=x onerror="window.__pwned = true">',
            '',
            '| plan | window |',
            '| --- | --- |',
            '| Team | 14 days |',
            '',
            '```',
            '<script>window.__pwned = true</script>',
            '```',
            '[click](javascript:window.__pwned=true) and [docs](https://example.org/x)',
        ].join('\\n'), {has: (n) => n === 1, open: () => {}}));
        document.body.append(box);
        return {
            text: box.textContent, items: [...box.querySelectorAll('li')].map((li) => li.textContent),
            strong: box.querySelector('strong')?.textContent,
            cells: [...box.querySelectorAll('td')].map((c) => c.textContent),
            code: box.querySelector('pre code')?.textContent, cite: box.querySelector('a.cite')?.textContent,
            links: [...box.querySelectorAll('a:not(.cite)')].map((a) => a.href),
            dangerous: box.querySelectorAll('img, script, [onerror]').length,
        };
    }""")
    assert rendered["text"].startswith("Refunds work like this [1]")  # the "A:" label is gone
    assert rendered["items"][0] == "Starter and Team: 14 days" and rendered["strong"] == "14 days"
    assert 'onerror="window.__pwned = true"' in rendered["items"][1]  # shown as text, never as an element
    assert rendered["cells"] == ["Team", "14 days"]
    assert rendered["code"] == "<script>window.__pwned = true</script>"
    assert rendered["cite"] == "[1]"
    assert rendered["links"] == ["https://example.org/x"]
    assert rendered["dangerous"] == 0
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is False
    page.context.close()


def test_api_docs_load_with_no_network(site, browser, shots):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    outside: list[str] = []

    def local_only(route: Any) -> None:
        if route.request.url.startswith(site.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.goto(site.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ragtune", timeout=30_000)
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    page.screenshot(path=shots / "web_docs.png")
    assert outside == []
    context.close()


def test_an_extractive_answer_is_marked_as_quoted_with_its_documents_sections(site, browser, shots, embedder):
    """A knowledge base set to quote its sources: the page marks the answer as quoted and lists each document once,
    with its sections."""
    from playwright.sync_api import expect

    from ragtune.kb import KnowledgeBase

    folder = site.root / "quotes"
    if not folder.exists():
        with KnowledgeBase.open(folder, create=True, embedder=embedder) as kb:
            assert kb.ingest(EXAMPLES / "handbook").ok
        (folder / "ragtune.toml").write_text('answer_mode = "extractive"\n')
    page = open_page(browser, site, "admin")
    page.get_by_label("Pick a knowledge base").select_option("quotes")
    answer = ask(page)
    expect(answer.locator(".answer-text")).to_have_text(
        "“Enterprise customers have a refund window of 45 days from the invoice date.” [1]")
    expect(answer.locator(".mode")).to_have_text("Quoted from the sources")
    item = answer.locator(".sources li").first
    expect(item.locator("a.source-link")).to_contain_text("refunds.md")
    expect(item).to_contain_text("Refund policy › Enterprise plans")
    page.screenshot(path=shots / "web_extractive.png")
    page.context.close()
