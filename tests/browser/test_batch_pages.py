"""Batches in a real Chromium, against the real stack: the demo page's batch of twenty,
jobhub.watchBatch over its stream (cut and resumed) and over polling, and the console's
batch page (its children filtered by status, and cancel).

A batch's final state must reach the page whole whichever way it came: every child's final
snapshot once, none older than one already handed over, the batch's counts exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from jobhub import Settings, create_app
from tests.support.browser import needs_chromium, serve, wait_for
from tests.support.readme import blocks
from tests.support.servers import ThreadedServer

pytestmark = needs_chromium

# The page's own record of a watch: every batch snapshot, every child's snapshot and every
# connection state watchBatch handed over, and its end.
WATCH = """async ([batchId, seen]) => {
    window[seen] = { batches: [], jobs: [], states: [], final: null, error: null };
    const record = window[seen];
    jobhub.watchBatch(batchId, {
        onUpdate: (batch) => record.batches.push(batch),
        onJob: (job) => record.jobs.push(job),
        onConnection: (state) => record.states.push(state),
    }).then((final) => { record.final = final; }, (error) => { record.error = String(error); });
}"""


def count_jobs(n: int, steps: int, delay: float) -> list[dict[str, Any]]:
    return [
        {"function": "demo.count", "kwargs": {"steps": steps, "delay": delay}} for _ in range(n)
    ]


KEYED = {"Authorization": "Bearer page-key"}
"""The API key of the ``secured`` app."""


def start_batch(
    base_url: str, jobs: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    answer = httpx.post(f"{base_url}/batches", json={"jobs": jobs}, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    started: dict[str, Any] = answer.json()
    started["token"] = answer.headers.get("Jobhub-Token")
    return started


def watched(page: Page, batch_id: str, seen: str = "seen") -> None:
    page.add_script_tag(url="/static/jobhub.js")
    page.evaluate(WATCH, [batch_id, seen])


def record(page: Page, seen: str = "seen") -> dict[str, Any]:
    got: dict[str, Any] = page.evaluate(f"window.{seen}")
    return got


def wait_final(page: Page, seen: str = "seen", timeout: float = 30) -> dict[str, Any]:
    wait_for(lambda: bool(page.evaluate(f"window.{seen}.final || window.{seen}.error")),
             timeout, "the batch's end", page)  # fmt: skip
    got = record(page, seen)
    assert got["error"] is None, got["error"]
    return got


def final_children(got: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Each child's last snapshot handed to onJob, as (status, seq); and each child's seqs
    went up one call after another (none handed over twice, none older than one before)."""
    last: dict[str, tuple[str, int]] = {}
    for job in got["jobs"]:
        if job["job_id"] in last:
            assert job["seq"] > last[job["job_id"]][1], job
        last[job["job_id"]] = (job["status"], job["seq"])
    return last


def assert_children_final(got: dict[str, Any], base_url: str, job_ids: list[str]) -> None:
    """Every child's final state, as GET /jobs/{id} has it, reached onJob."""
    last = final_children(got)
    assert sorted(last) == sorted(job_ids)
    for job_id in job_ids:
        stored = httpx.get(f"{base_url}/jobs/{job_id}", timeout=10).json()
        assert last[job_id] == (stored["status"], stored["seq"]), job_id


def test_the_demo_batch_ends_with_18_finished_and_2_failed_on_one_bar(page: Page) -> None:
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    page.goto("/")
    page.evaluate("localStorage.clear()")
    page.reload()
    page.click("#batch")
    card = page.locator(".batch")
    expect(card).to_have_count(1, timeout=10_000)
    expect(card).to_have_attribute("data-status", "failed", timeout=30_000)
    assert card.locator('[data-status="finished"] .n').text_content() == "18"
    assert card.locator('[data-status="failed"] .n').text_content() == "2"
    assert card.locator('[data-status="running"] .n').text_content() == "0"
    assert card.locator("progress").evaluate("bar => bar.value") == 100
    expect(card.locator(".status")).to_have_text("failed · 100% · 20 of 20 ended")
    assert page.locator("#jobs .job").count() == 0  # one bar for the set, none per child
    # A bar needs the batch's snapshots alone: its stream leaves the children's out.
    assert streams and all(url.endswith("/events?jobs=false") for url in streams)

    page.reload()  # the batch comes back, ended, after a refresh
    expect(page.locator(".batch")).to_have_attribute("data-status", "failed", timeout=10_000)
    assert page.locator('.batch [data-status="finished"] .n').text_content() == "18"


@pytest.fixture
def cuttable(redis_url: str, base_url: str) -> Iterator[ThreadedServer]:
    """The app in this process, whose open streams a test can cut; the session's worker
    runs the jobs."""
    with ThreadedServer(create_app(Settings(redis_url=redis_url))) as web:
        yield web


def test_watch_batch_resumes_a_cut_stream_missing_and_repeating_no_child(
    browser: Browser, cuttable: ThreadedServer
) -> None:
    context = browser.new_context(base_url=cuttable.base_url)
    page = context.new_page()
    opened: list[Request] = []
    page.on("request", lambda r: opened.append(r) if r.url.endswith("/events") else None)
    page.goto("/static/jobhub.js")
    started = start_batch(cuttable.base_url, count_jobs(20, steps=10, delay=0.2))
    watched(page, started["batch_id"])

    def running() -> int:
        return len({job["job_id"] for job in record(page)["jobs"] if job["status"] == "running"})

    wait_for(lambda: running() >= 5, 20, "children running, on the stream", page)
    assert record(page)["final"] is None  # cut mid-batch

    cuttable.call(lambda: [stream.cut() for stream in cuttable.app.state.services.streams])
    got = wait_final(page)
    # EventSource opened the stream again, from the last id it had.
    assert len(opened) >= 2
    assert opened[-1].all_headers().get("last-event-id")
    assert got["states"] == ["stream", "closed"]  # resumed: never fell back to polling
    assert got["final"]["counts"]["finished"] == 20 and got["final"]["status"] == "finished"
    assert_children_final(got, cuttable.base_url, started["job_ids"])
    seqs = [batch["seq"] for batch in got["batches"]]
    assert seqs == sorted(set(seqs))  # the batch never went backwards, nor came twice
    context.close()


def test_polling_without_event_source_reaches_the_streams_final_state(
    browser: Browser, base_url: str
) -> None:
    started = start_batch(
        base_url,
        count_jobs(8, steps=4, delay=0.2)
        + [{"function": "demo.fail", "kwargs": {"after": 1, "delay": 0.2}}] * 2,
    )
    pages: list[Page] = []
    contexts: list[BrowserContext] = []
    for has_stream in (True, False):
        context = browser.new_context(base_url=base_url)
        if not has_stream:  # a browser (or proxy) without event streams
            context.add_init_script("delete window.EventSource")
        page = context.new_page()
        page.goto("/static/jobhub.js")
        watched(page, started["batch_id"])
        contexts.append(context)
        pages.append(page)
    streamed, polled = (wait_final(page) for page in pages)
    assert streamed["states"] == ["stream", "closed"]
    assert polled["states"] == ["polling", "closed"]
    assert polled["final"] == streamed["final"]
    assert polled["final"]["counts"]["finished"] == 8 and polled["final"]["counts"]["failed"] == 2
    assert final_children(polled) == final_children(streamed)
    assert_children_final(polled, base_url, started["job_ids"])
    missing = pages[1].evaluate("jobhub.watchBatch('no-such-batch').catch((e) => e.name)")
    assert missing == "BatchError"
    for context in contexts:
        context.close()


@pytest.fixture
def console(browser: Browser, base_url: str) -> Iterator[Page]:
    """A console page; the test fails on any uncaught error in its scripts."""
    errors: list[str] = []
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 860})
    context.on("weberror", lambda error: errors.append(str(error.error)))
    yield context.new_page()
    context.close()
    assert errors == []


def rows_of(page: Page) -> Callable[[], list[str]]:
    return lambda: page.eval_on_selector_all(
        "#batch-rows tr", "rows => rows.map(r => r.dataset.status)"
    )


def test_the_console_batch_page_filters_children_by_status_and_cancels(
    console: Page, base_url: str
) -> None:
    fails = [{"function": "demo.fail", "kwargs": {"after": 1, "delay": 0.1}}] * 2
    started = start_batch(base_url, fails + count_jobs(4, steps=100, delay=0.2))
    batch_id = started["batch_id"]
    page = console
    page.goto("/dashboard#/batches")
    expect(page.locator(f'#batch-list tr[data-batch="{batch_id}"]')).to_be_visible(timeout=10_000)
    page.click(f'#batch-list a[href="#/batch/{batch_id}"]')
    view = page.locator("#batch-view")
    expect(view.locator('.batch-counts [data-status="failed"] .n')).to_have_text(
        "2", timeout=20_000
    )
    expect(view.locator('.batch-counts [data-status="running"] .n')).to_have_text(
        "4", timeout=20_000
    )
    rows = rows_of(page)
    wait_for(lambda: len(rows()) == 6, 10, "all six children", page)
    # A child's page links back to its batch.
    view.locator("#batch-rows tr a").first.click()
    expect(page.locator("#detail-view .batch-link")).to_have_text(batch_id, timeout=10_000)
    page.locator("#detail-view .batch-link").click()
    wait_for(lambda: len(rows()) == 6, 10, "the batch's page again", page)

    view.locator("select[name=status]").select_option("failed")
    assert page.evaluate("location.hash") == f"#/batch/{batch_id}?status=failed"
    wait_for(lambda: rows() == ["failed", "failed"], 10, "the failed children only", page)
    view.locator("select[name=status]").select_option("running")
    wait_for(lambda: rows() == ["running"] * 4, 10, "the running children only", page)

    view.locator("button.cancel").click()
    expect(view.locator("article")).to_have_attribute("data-status", "canceled", timeout=20_000)
    expect(view.locator('.batch-counts [data-status="canceled"] .n')).to_have_text("4")
    wait_for(lambda: rows() == [], 10, "no child running any more", page)
    view.locator(".batch-counts [data-status=canceled] a").click()
    wait_for(lambda: rows() == ["canceled"] * 4, 10, "the canceled children", page)
    expect(view.locator("button.cancel")).to_be_disabled()
    expect(view.locator("button.retry")).to_be_enabled()
    stored = httpx.get(f"{base_url}/batches/{batch_id}", timeout=10).json()
    assert stored["status"] == "canceled" and stored["counts"]["canceled"] == 4

    # Retry failed: the six run again as new jobs in their places, and the page follows.
    view.locator("button.retry").click()
    expect(view.locator("article")).to_have_attribute("data-status", "active", timeout=10_000)
    view.locator("select[name=status]").select_option("")
    wait_for(lambda: "canceled" not in rows() and len(rows()) == 6, 10, "the new children", page)
    retried = httpx.get(f"{base_url}/batches/{batch_id}/jobs", timeout=10).json()["jobs"]
    assert {job["job_id"] for job in retried}.isdisjoint(started["job_ids"])
    assert sorted(job["retry_of"] for job in retried) == sorted(started["job_ids"])
    view.locator("button.cancel").click()  # the long ones would hold the session's worker
    expect(view.locator("article")).to_have_attribute("data-status", "canceled", timeout=20_000)


def test_the_docs_batch_snippet_draws_one_bar_for_the_set(page: Page, base_url: str) -> None:
    (snippet,) = [block.code for block in blocks("html") if "startBatch" in block.code]
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    serve(page, f"{base_url}/batch.html", f"<!doctype html><title>batch</title>{snippet}")
    page.goto("/batch.html")
    wait_for(lambda: "batch finished" in logged, 30, "the batch's end", page)
    expect(page.locator("#counts")).to_have_text("10 of 10 finished")
    assert page.locator("#batch").evaluate("bar => bar.value") == 100
    ended = [line for line in logged if line.endswith(" finished") and line != "batch finished"]
    assert len(ended) == 10  # every child's end, once


def test_the_readme_batch_line_moves_the_bar(page: Page, base_url: str) -> None:
    (line,) = [block.code for block in blocks("js") if "watchBatch" in block.code]
    started = start_batch(base_url, count_jobs(3, steps=2, delay=0.2))
    page.goto("/static/jobhub.js")
    page.add_script_tag(url="/static/jobhub.js")
    page.evaluate(
        f"""() => {{ const batchId = {started["batch_id"]!r};
            const bar = document.body.appendChild(document.createElement("progress"));
            bar.max = 100; bar.id = "bar"; {line} }}"""
    )
    wait_for(lambda: page.evaluate("document.getElementById('bar').value") == 100, 30,
             "a full bar", page)  # fmt: skip


@pytest.fixture
def secured(redis_url: str, base_url: str) -> Iterator[str]:
    """The app with an API key and batch tokens; the session stack's worker runs the jobs."""
    settings = Settings(redis_url=redis_url, api_keys=("page-key",), token_secret="s3cret")
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url


def test_watch_batch_follows_a_batch_with_its_token_where_auth_is_on(
    browser: Browser, secured: str
) -> None:
    context = browser.new_context(base_url=secured)
    page = context.new_page()
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events?" in r.url else None)
    page.goto("/static/jobhub.js")
    page.add_script_tag(url="/static/jobhub.js")
    batch_id = page.evaluate(
        """async () => (await jobhub.startBatch(
            [{ function: "demo.count", kwargs: { steps: 2, delay: 0.1 } }], { apiKey: "page-key" }
        )).batch_id"""
    )
    context.clear_cookies()  # the token alone, as a page of another origin would have it
    finals = page.evaluate(
        """async (id) => Promise.all(["auto", "poll"].map(
            (transport) => jobhub.watchBatch(id, { transport, onJob: () => {} })))""",
        batch_id,
    )
    assert [final["status"] for final in finals] == ["finished", "finished"]
    assert streams and all("token=" in url for url in streams)
    refused = httpx.get(f"{secured}/batches/{batch_id}", timeout=10)
    assert refused.status_code == 401  # what the token opened is shut without it

    # A token of another batch, and no credential at all: refused at once, and said.
    other = start_batch(secured, count_jobs(1, steps=1, delay=0), KEYED)
    errors = page.evaluate(
        """async ([id, token]) => Promise.all([
            jobhub.watchBatch(id, { token }).catch((e) => [e.name, e.status]),
            jobhub.watchBatch("no-such-batch").catch((e) => [e.name, e.status]),
        ])""",
        [batch_id, other["token"]],
    )
    assert errors == [["RequestError", 403], ["RequestError", 401]]
    context.close()


def test_a_signed_in_console_follows_and_cancels_a_batch_with_its_session(
    console: Page, secured: str
) -> None:
    batch_id = start_batch(secured, count_jobs(3, steps=100, delay=0.2), KEYED)["batch_id"]
    page = console
    page.goto(f"{secured}/dashboard#/batch/{batch_id}")
    page.fill("#signin input[name=api_key]", "page-key")
    page.press("#signin input[name=api_key]", "Enter")
    view = page.locator("#batch-view")
    expect(view.locator('.batch-counts [data-status="running"] .n')).to_have_text(
        "3", timeout=20_000
    )
    expect(view.locator(".stream")).to_have_text("● live")  # its stream, by the session cookie
    view.locator("button.cancel").click()  # a POST with the session's CSRF token
    expect(view.locator("article")).to_have_attribute("data-status", "canceled", timeout=20_000)
    expect(view.locator('.batch-counts [data-status="canceled"] .n')).to_have_text("3")
