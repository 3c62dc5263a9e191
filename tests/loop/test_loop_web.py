"""The "Improve" view in headless Chromium: feedback counts, each stage's champion, the decisions, a chart per metric
across versions; an admin queues a loop run from the page and sees it finish; a reader sees no run button; 中文."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_recipe
from harness import RunningServer, fake_llm_server, running_server

from ragtune.loop import init_loop, run_loop

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run"]
RECIPE = """
[evalset]
feedback_share = 0.4
unanswerable = 0.2
[embedder]
enabled = false
[demonstrations]
enabled = true
min_examples = 3
[demonstrations.gate]
target = "answer_correctness"
guards = { refusal_accuracy = 0.01, citation_precision = 0.01, faithfulness = 0.01, latency_p95 = 3.0 }
[data]
carry_inconclusive = false   # a rejected first run uses its feedback up, so the page's run finds none (waiting)
[measure]
resamples = 1000
latency_questions = 3
"""

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, handbook_base: Path, embedder: Any) -> Iterator[RunningServer]:
    """The server with the rated handbook KB whose loop has made one decision (demonstrations, fake LLM)."""
    root = tmp_path_factory.mktemp("web-loop")
    shutil.copytree(handbook_base, root / "handbook")
    for llm_url in fake_llm_server():
        for server in running_server(root, embedder, llm_url):
            kb = server.state.kbs.get("handbook")
            init_loop(kb, write_recipe(root / "loop.toml", RECIPE))
            run_loop(kb)
            yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


def open_page(browser: Any, site: RunningServer, key: str, width: int = 1280) -> Any:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(site.url + "/")
    page.get_by_label("API key").fill(site.keys[key])
    page.get_by_label("API key").press("Enter")
    expect(page.get_by_label("Pick a knowledge base")).to_have_value("handbook")
    return page


def test_the_improve_view_shows_the_loop_and_runs_it(site: RunningServer, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, site, "admin")
    improve = page.get_by_role("region", name="Improve")
    expect(improve).to_be_visible(timeout=30_000)
    expect(improve.locator(".loop-feedback")).to_contain_text("👍 25 helpful · 👎 2 not helpful · 2 corrections")
    stages = improve.locator("table.loop-stages tbody tr")
    expect(stages).to_have_count(4)
    expect(stages.filter(has_text="demonstrations (on)")).to_contain_text("v000")
    decisions = improve.locator(".loop-decisions li")
    expect(decisions).to_have_count(1)
    verdict = decisions.first.get_attribute("data-verdict")
    assert verdict in ("promoted", "rejected")
    expect(decisions.first).to_contain_text("answer_correctness")
    charts = improve.locator("svg.loop-chart[data-stage='demonstrations']")
    assert charts.count() >= 4  # answer_correctness, faithfulness, citation precision, latency ...
    chart = improve.locator("svg.loop-chart[data-metric='answer_correctness']")
    expect(chart.locator("circle")).to_have_count(2)  # champion and challenger of the one decision
    assert "champion" in chart.get_attribute("aria-label")
    shots = Path(os.environ.get("RAGTUNE_SCREENSHOTS") or tmp_path)
    improve.screenshot(path=shots / "web_improve.png")

    # An admin queues a run from the page; it finds no new feedback and says so.
    page.get_by_role("button", name="Run the loop").click()
    expect(improve.locator(".loop-job")).to_have_attribute("data-status", "done", timeout=120_000)
    expect(decisions).to_have_count(2, timeout=30_000)
    expect(decisions.first).to_have_attribute("data-verdict", "waiting")
    expect(decisions.first).to_contain_text("waiting for data")

    # The page's language applies to the view too.
    page.get_by_label("Language").select_option("zh")
    expect(page.get_by_role("region", name="改进")).to_be_visible()
    expect(page.locator("#improve .loop-decisions li").first).to_contain_text("等待更多数据")
    page.context.close()


def test_a_reader_sees_the_loop_but_cannot_run_it(site: RunningServer, browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, site, "reader", width=390)
    improve = page.locator("#improve")
    expect(improve).to_be_visible(timeout=30_000)
    expect(improve.locator(".loop-decisions li").first).to_be_visible()
    expect(page.get_by_role("button", name="Run the loop")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.context.close()
