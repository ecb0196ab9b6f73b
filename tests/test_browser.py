"""The demo page and jobhub.js in a real headless Chromium, against the real stack.

Debian's Chromium at /usr/bin/chromium, driven by Playwright (no browser download). Where
it cannot be had these tests are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from jobhub import Settings, create_app

from .conftest import ThreadedServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update",
]  # fmt: skip
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)
IN_CI = os.environ.get("CI") == "true"

pytestmark = pytest.mark.skipif(
    not HAVE_CHROMIUM and not IN_CI,
    reason=f"no browser at {CHROMIUM}: as root, `apt-get install chromium` (scripts/test does)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail(f"CI=true but no browser at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def secured(redis_url: str, base_url: str) -> Iterator[str]:
    """The app with an API key and job tokens; the session stack's worker runs the jobs."""
    settings = Settings(redis_url=redis_url, api_keys=("page-key",), token_secret="s3cret")
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    yield page
    context.close()


def test_started_job_reaches_100_percent_and_shows_its_result(page: Page, tmp_path: Path) -> None:
    page.goto("/")
    page.fill("#steps", "3")
    page.click("button[data-function='demo.count']")
    job = page.locator(".job").first
    expect(job).to_have_class("job finished", timeout=20_000)
    assert job.locator("progress").evaluate("bar => bar.value") == 100
    expect(job.locator(".result")).to_contain_text('"steps": 3')
    shot = tmp_path / "finished.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000


def test_failing_job_turns_red_with_its_error(page: Page) -> None:
    page.goto("/")
    page.click("button[data-function='demo.fail']")
    job = page.locator(".job").first
    expect(job).to_have_class("job failed", timeout=20_000)
    expect(job.locator(".status")).to_have_text("failed: demo failure after 2 steps")
    colour = job.evaluate("el => getComputedStyle(el).borderLeftColor")
    assert colour == "rgb(198, 40, 40)"


def test_bar_completes_by_polling_when_the_stream_fails(page: Page) -> None:
    streams: list[str] = []
    polls: list[str] = []

    def refuse(route: Route) -> None:
        streams.append(route.request.url)
        route.abort()

    page.route("**/events?*", refuse)
    page.on("request", lambda r: polls.append(r.url) if "/jobs/" in r.url else None)
    page.goto("/")
    page.fill("#steps", "3")
    page.click("button[data-function='demo.count']")
    job = page.locator(".job").first
    expect(job).to_have_class("job finished", timeout=20_000)
    expect(job.locator(".result")).to_contain_text('"steps": 3')
    assert streams, "the client never tried the stream"
    assert len(polls) >= 2  # it fell back to GET /jobs/{id}


def test_refresh_mid_job_restores_the_bar(page: Page) -> None:
    page.goto("/")
    page.fill("#steps", "8")
    page.click("button[data-function='demo.count']")
    job = page.locator(".job").first
    expect(job).to_have_class("job running", timeout=20_000)
    job_id = job.locator("code").inner_text()
    page.wait_for_function("() => document.querySelector('.job progress').value >= 25")
    page.reload()
    restored = page.locator(f"#job-{job_id}")
    expect(restored).to_be_visible(timeout=5_000)
    assert restored.locator("progress").evaluate("bar => bar.value") >= 25  # at once, not from 0
    expect(restored).to_have_class("job finished", timeout=20_000)


def test_client_completes_a_job_inside_a_web_worker(page: Page) -> None:
    page.goto("/")
    final = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const base = location.origin;
            const code = `
                importScripts("${base}/static/jobhub.js");
                const options = { baseUrl: "${base}" };
                jobhub.start("demo.count", { ...options, kwargs: { steps: 2, delay: 0.1 } })
                  .then((job) => jobhub.watch(job.job_id, options))
                  .then((snapshot) => postMessage(snapshot),
                        (error) => postMessage({ error: String(error) }));`;
            const blob = new Blob([code], { type: "text/javascript" });
            const worker = new Worker(URL.createObjectURL(blob));
            worker.onmessage = (event) => { worker.terminate(); resolve(event.data); };
            worker.onerror = (event) => reject(event.message);
        })"""
    )
    assert final["status"] == "finished", final
    assert final["result"] == {"steps": 2}


def test_watch_rejects_on_timeout_with_the_last_snapshot(page: Page) -> None:
    page.goto("/")
    outcome = page.evaluate(
        """() => jobhub.start("demo.count", { kwargs: { steps: 5, delay: 1 } })
            .then((job) => jobhub.watch(job.job_id, { timeout: 500 }))
            .then(() => ({ resolved: true }),
                  (error) => ({ name: error.name, status: error.snapshot?.status }))"""
    )
    assert outcome["name"] == "TimeoutError"
    assert outcome["status"] in {"queued", "started", "running"}


def test_watch_rejects_a_failed_job_with_its_snapshot(page: Page) -> None:
    page.goto("/")
    outcome = page.evaluate(
        """() => jobhub.start("demo.fail", { kwargs: { after: 1, delay: 0.05 } })
            .then((job) => jobhub.watch(job.job_id))
            .then(() => ({ resolved: true }),
                  (error) => ({ name: error.name, detail: error.snapshot.error.detail }))"""
    )
    assert outcome == {"name": "JobError", "detail": "demo failure after 1 steps"}


def test_client_loads_as_an_es_module(page: Page) -> None:
    page.goto("/")
    kinds = page.evaluate(
        "() => import('/static/jobhub.mjs').then((m) => [typeof m.start, typeof m.watch])"
    )
    assert kinds == ["function", "function"]


def test_more_jobs_than_one_stream_carries_all_finish(page: Page) -> None:
    page.goto("/")
    statuses = page.evaluate(
        """async () => {
            const jobs = await Promise.all(Array.from({ length: 105 }, () =>
                jobhub.start("demo.count", { kwargs: { steps: 1, delay: 0.2 } })));
            const finals = await Promise.all(jobs.map((job) => jobhub.watch(job.job_id)));
            return finals.map((s) => s.status);
        }"""
    )
    assert statuses == ["finished"] * 105


def test_cancel_button_cancels_a_running_job(page: Page) -> None:
    page.goto("/")
    page.click("button[data-function='long']")
    job = page.locator(".job").first
    expect(job).to_have_class("job running", timeout=20_000)
    job.locator("button.cancel").click()
    expect(job).to_have_class("job canceled", timeout=10_000)
    expect(job.locator(".status")).to_contain_text("canceled at")
    expect(job.locator("button.cancel")).to_be_hidden()


def test_pause_and_resume_buttons(page: Page) -> None:
    page.goto("/")
    page.click("button[data-function='long']")
    job = page.locator(".job").first
    expect(job).to_have_class("job running", timeout=20_000)
    job.locator("button.pause").click()
    expect(job).to_have_class("job paused", timeout=10_000)
    expect(job.locator("button.pause")).to_be_hidden()
    job.locator("button.resume").click()
    expect(job).to_have_class("job running", timeout=10_000)
    job.locator("button.cancel").click()
    expect(job).to_have_class("job canceled", timeout=10_000)


def test_dashboard_lists_recent_jobs_and_updates_them_in_place(page: Page) -> None:
    page.goto("/dashboard")
    expect(page.locator("#live")).to_have_text("● live", timeout=10_000)
    body = '{"function": "demo.count", "kwargs": {"steps": 3, "delay": 0.2}}'
    job_id = page.evaluate(
        """(body) => fetch("/jobs", {
                method: "POST", headers: {"content-type": "application/json"}, body,
            }).then((r) => r.json()).then((snapshot) => snapshot.job_id)""",
        body,
    )
    row = page.locator(f"#row-{job_id}")
    expect(row).to_be_visible(timeout=10_000)  # a new job appears at the top
    expect(row).to_have_class("finished", timeout=20_000)  # and updates in place
    assert page.locator("#rows tr").first.get_attribute("id") == f"row-{job_id}"
    assert row.locator("progress").evaluate("bar => bar.value") == 100


def test_client_follows_jobs_with_their_tokens_where_auth_is_on(
    browser: Browser, secured: str
) -> None:
    context = browser.new_context(base_url=secured)
    page = context.new_page()
    streams: list[str] = []
    polls: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events?" in r.url else None)
    page.on("request", lambda r: polls.append(r.url) if "/jobs/" in r.url else None)
    page.goto("/static/jobhub.js")  # any page of the origin will do
    page.add_script_tag(url="/static/jobhub.js")
    finals = page.evaluate(
        """async () => {
            const jobs = await Promise.all([1, 2].map(() => jobhub.start("demo.count",
                { kwargs: { steps: 2, delay: 0.1 }, apiKey: "page-key" })));
            return Promise.all(jobs.map((job) => jobhub.watch(job.job_id)));
        }"""
    )
    context.close()
    assert [f["status"] for f in finals] == ["finished", "finished"]
    assert streams and all("tokens=" in url for url in streams)  # the one stream, authorised
    assert polls == []  # it was not polling that got them there
