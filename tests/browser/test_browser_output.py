"""A job's live output in a real Chromium: jobhub.js's onOutput, onLog and onGap, over the
stream and over polling, and the demo page's text that grows under a job's bar, against the real
stack. Every chunk must arrive once and in order, whichever way it came, and a refresh
must bring back all of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from jobhub import Settings, create_app
from tests.support.browser import needs_chromium, serve, wait_for
from tests.support.output import ordinal, small_trimmed_job
from tests.support.readme import blocks
from tests.support.servers import ROOT, ThreadedServer

pytestmark = needs_chromium

SCREENSHOT = ROOT / "docs" / "output.png"
"""The README's picture of the demo page typing; `JOBHUB_UPDATE_DOCS=1` takes it again."""


def words(count: int, first: int = 0) -> str:
    return "".join(f"w{i} " for i in range(first, count))


def start_tokens(page: Page) -> str:
    """Click the demo's button; the new job's id, once its row is drawn."""
    before = page.locator(".job").count()
    page.click("button[data-function='demo.tokens']")
    expect(page.locator(".job")).to_have_count(before + 1, timeout=10_000)
    return page.locator(".job code").first.inner_text()


def text_of(page: Page, job_id: str) -> str:
    return page.locator(f"#job-{job_id} .output").text_content() or ""


def logs_of(page: Page, job_id: str) -> list[tuple[str, str]]:
    """The job's log lines on the page, as (level, message)."""
    lines: list[list[str]] = page.evaluate(
        """(id) => [...document.querySelectorAll(`#job-${id} .log li`)].map(
            (li) => [li.querySelector(".level").textContent, li.lastChild.textContent])""",
        job_id,
    )
    return [(level, message) for level, message in lines]


def test_the_demo_types_the_text_live_and_a_refresh_restores_all_of_it(
    page: Page, tmp_path: Path
) -> None:
    page.set_viewport_size({"width": 900, "height": 700})
    page.goto("/")
    page.evaluate("localStorage.clear()")
    page.reload()
    # Every length the text goes through, as the page draws it.
    page.evaluate(
        """() => { window.lengths = []; new MutationObserver(() => {
            const text = document.querySelector(".job .output");
            if (text) window.lengths.push(text.textContent.length);
        }).observe(document.getElementById("jobs"), { childList: true, subtree: true }); }"""
    )
    job_id = start_tokens(page)
    row = page.locator(f"#job-{job_id}")
    expect(row.locator(".output")).to_contain_text("w20 ", timeout=20_000)
    before = text_of(page, job_id)
    assert before.startswith(words(21))  # w0 .. w20, in order, none twice
    lengths: list[int] = page.evaluate("window.lengths")
    assert len(set(lengths)) > 5, lengths  # it grew chunk by chunk, not all at once
    if os.environ.get("JOBHUB_UPDATE_DOCS") == "1" and row.get_attribute("class") == "job running":
        page.locator("main").screenshot(path=str(SCREENSHOT))

    page.reload()
    # Back at once with everything it had (the stream replays the job's output), not
    # from nothing, then on to the end with nothing repeated.
    expect(page.locator(f"#job-{job_id} .output")).to_contain_text(before, timeout=5_000)
    assert text_of(page, job_id).startswith(before)
    expect(row).to_have_class("job finished", timeout=20_000)
    assert text_of(page, job_id) == words(50)
    assert logs_of(page, job_id) == [("info", f"{n} words so far") for n in range(10, 51, 10)]
    assert row.locator(".result").is_hidden()  # the text is the answer: not shown twice
    shot = tmp_path / "typed.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000


def test_two_jobs_on_one_stream_each_get_their_own_text_once(page: Page) -> None:
    page.goto("/")
    first = start_tokens(page)
    expect(page.locator(f"#job-{first} .output")).to_contain_text("w10 ", timeout=20_000)
    # A second job: the page's one stream is opened again for both, and replays the first
    # one's output from its start (its entries carry no job id; their cursor says whose).
    second = start_tokens(page)
    for job_id in (first, second):
        expect(page.locator(f"#job-{job_id}")).to_have_class("job finished", timeout=20_000)
        assert text_of(page, job_id) == words(50)
        assert len(logs_of(page, job_id)) == 5


def test_the_demo_text_fits_a_phone_screen(browser: Browser, base_url: str) -> None:
    context = browser.new_context(base_url=base_url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto("/")
    job_id = start_tokens(page)
    row = page.locator(f"#job-{job_id}")
    expect(row).to_have_class("job finished", timeout=20_000)
    assert text_of(page, job_id) == words(50)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    box = row.locator(".output").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    context.close()


def test_polling_hands_every_chunk_and_log_line_over_once_in_order(page: Page) -> None:
    outputs: list[str] = []
    page.on("request", lambda r: outputs.append(r.url) if "/output?" in r.url else None)
    page.goto("/static/jobhub.js")  # any page of the origin will do
    page.add_script_tag(url="/static/jobhub.js")
    got: dict[str, Any] = page.evaluate(
        """async () => {
            const follow = async (kwargs) => {
                const job = await jobhub.start("demo.tokens", { kwargs });
                const chunks = [], logs = [], ids = [];
                const final = await jobhub.watch(job.job_id, {
                    transport: "poll",
                    onOutput: (data, entry) => { chunks.push(data); ids.push(entry.id); },
                    onLog: (entry) => logs.push(entry.level + " " + entry.message),
                });
                return { chunks, logs, ids, result: final.result };
            };
            // One written while it is polled; one too long for a page of output.
            return { slow: await follow({ count: 30, delay: 0.05 }),
                     long: await follow({ count: 1500, delay: 0 }) };
        }"""
    )
    slow, long = got["slow"], got["long"]
    assert "".join(slow["chunks"]) == words(30) == slow["result"]
    assert slow["logs"] == [f"info {n} words so far" for n in (10, 20, 30)]
    assert "".join(long["chunks"]) == words(1500) == long["result"]
    assert len(long["logs"]) == 150
    assert len(set(long["ids"])) == 1500  # each entry carries its own id
    assert len(outputs) >= 4  # polled: the slow one more than once, the long one by pages


def test_a_refused_stream_leaves_the_demo_text_whole_by_polling(page: Page) -> None:
    page.route("**/events?*", lambda route: route.abort())
    page.goto("/")
    job_id = start_tokens(page)
    row = page.locator(f"#job-{job_id}")
    expect(row).to_have_class("job finished", timeout=30_000)
    assert text_of(page, job_id) == words(50)
    assert len(logs_of(page, job_id)) == 5


@pytest.fixture
def cuttable(redis_url: str, base_url: str) -> Iterator[ThreadedServer]:
    """The app in this process, whose open streams a test can cut; the session's worker
    runs the jobs."""
    with ThreadedServer(create_app(Settings(redis_url=redis_url))) as web:
        yield web


def test_a_watch_that_goes_from_stream_to_polling_mid_job_loses_and_repeats_nothing(
    browser: Browser, cuttable: ThreadedServer
) -> None:
    context = browser.new_context(base_url=cuttable.base_url)
    page = context.new_page()
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/output?" in r.url else None)
    page.goto("/")
    job_id = start_tokens(page)
    row = page.locator(f"#job-{job_id}")
    expect(row.locator(".output")).to_contain_text("w5 ", timeout=20_000)

    def refuse(route: Route) -> None:
        route.abort()

    # From now on no stream opens, and the open one is cut: EventSource tries again, fails
    # as often as jobhub.js allows, and the page polls from the last entry it has.
    page.route("**/events?*", refuse)
    cuttable.call(lambda: [stream.cut() for stream in cuttable.app.state.services.streams])
    expect(row).to_have_class("job finished", timeout=30_000)
    assert text_of(page, job_id) == words(50)
    assert len(logs_of(page, job_id)) == 5
    wait_for(lambda: len(polls) > 0, 5, "a poll of the output", page)
    assert "after=0" not in polls[0]  # it went on from where the stream left it
    context.close()


def test_the_readme_output_snippet_types_the_answer(page: Page, base_url: str) -> None:
    (snippet,) = [block.code for block in blocks("html") if "onOutput" in block.code]
    logged: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    serve(page, f"{base_url}/answer.html", f"<!doctype html><title>answer</title>{snippet}")
    page.goto("/answer.html")
    wait_for(lambda: "info 20 words so far" in logged, 30, "the last log line", page)
    expect(page.locator("#answer")).to_have_text(words(20).strip())
    assert page.locator("#answer").text_content() == words(20)
    assert logged == ["info 10 words so far", "info 20 words so far"]
    assert errors == []


def test_jobhub_js_hands_the_gap_to_on_gap_over_the_stream_and_polling(
    page: Page, redis_url: str
) -> None:
    # Playwright's sync API holds this thread's event loop: write from a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        job_id = pool.submit(asyncio.run, small_trimmed_job(redis_url)).result()
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto("/static/jobhub.js")  # any page of the origin will do
    page.add_script_tag(url="/static/jobhub.js")
    got: dict[str, Any] = page.evaluate(
        """async (id) => {
            const follow = async (transport) => {
                const seen = [];
                await jobhub.watch(id, {
                    transport,
                    onOutput: (data) => seen.push(data.n),
                    onGap: (gap) => seen.push(gap),
                });
                return seen;
            };
            const stream = await follow("auto"), poll = await follow("poll");
            await jobhub.watch(id, { transport: "poll", onOutput: () => {} });
            return { stream, poll };
        }""",
        job_id,
    )
    for seen in (got["stream"], got["poll"]):
        gap, *rest = seen
        assert gap["missed"] == 150 and ordinal(gap["from"]) == 1 and ordinal(gap["to"]) == 150
        assert rest == list(range(151, 251))
    assert f"jobhub: job {job_id} missed 150 entries of its output (trimmed)" in warnings
