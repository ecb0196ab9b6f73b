"""The operations console (/dashboard) in a real headless Chromium, against the real stack:
filters, a job close up with its live log, the actions, the charts, the workers, secured
mode, a phone's width; and the screenshots the README shows, kept in docs/
(`JOBHUB_UPDATE_DOCS=1` takes them again).

Debian's Chromium at /usr/bin/chromium, as in test_browser.py; skipped where it is missing,
except under CI=true.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from jobhub import Settings, create_app
from tests.support.browser import needs_chromium
from tests.support.servers import ROOT, ThreadedServer

DOCS = ROOT / "docs"
KEY = "console-page-key"
WIDE = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


pytestmark = needs_chromium


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Browser contexts for one test, closed after it; the test fails on any uncaught
    exception or unhandled rejection in the console's scripts."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def make(base_url: str, **options: Any) -> BrowserContext:
        context = browser.new_context(base_url=base_url, **{"viewport": WIDE, **options})
        context.on("weberror", lambda error: errors.append(str(error.error)))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert errors == []


@pytest.fixture
def page(new_context: Callable[..., BrowserContext], base_url: str) -> Page:
    return new_context(base_url).new_page()


@pytest.fixture(scope="module")
def secured(redis_url: str, base_url: str) -> Iterator[str]:
    """The app with an API key; the session stack's worker runs its jobs."""
    settings = Settings(redis_url=redis_url, api_keys=(KEY,), token_secret="console-secret")
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url


def start(base_url: str, function: str, **kwargs: Any) -> str:
    response = httpx.post(f"{base_url}/jobs", json={"function": function, "kwargs": kwargs})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def ended(base_url: str, job_id: str, limit: float = 20) -> dict[str, Any]:
    """The job's final snapshot, polled for until ``limit`` seconds have passed."""
    deadline = time.monotonic() + limit
    while True:
        snapshot: dict[str, Any] = httpx.get(f"{base_url}/jobs/{job_id}").json()
        if snapshot["status"] in {"finished", "failed", "canceled"}:
            return snapshot
        assert time.monotonic() < deadline, f"job {job_id} still {snapshot['status']}"
        time.sleep(0.05)


def open_console(page: Page, fragment: str = "") -> None:
    page.goto("/dashboard" + fragment)
    expect(page.locator("#live")).to_have_text("● live", timeout=10_000)


def wait_for_rows(page: Page, **wanted: str) -> None:
    """Until the list holds rows, and every row has these data-* values (the list reloads
    after a filter changes, so the rows drawn before it go first)."""
    page.wait_for_function(
        """(wanted) => {
            const rows = [...document.querySelectorAll("#rows tr")];
            return rows.length > 0 && rows.every((row) =>
                Object.entries(wanted).every(([name, value]) => row.dataset[name] === value));
        }""",
        arg=wanted,
        timeout=10_000,
    )


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ only with `JOBHUB_UPDATE_DOCS=1`, so a test run leaves the
    README's pictures (tracked files) as they are."""
    return DOCS if os.environ.get("JOBHUB_UPDATE_DOCS") == "1" else tmp_path


def shoot(page: Page, folder: Path, name: str, *, full_page: bool = False) -> Path:
    """A screenshot for the README, checked to be a real picture."""
    path = folder / name
    page.screenshot(path=str(path), full_page=full_page)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    viewport = page.viewport_size
    assert viewport is not None
    assert width == viewport["width"] and height >= viewport["height"] * 0.9
    assert len(data) > 20_000, f"{name} is {len(data)} bytes: a blank page?"
    return path


def test_filters_by_status_and_function_and_live_jobs_join_them(page: Page, base_url: str) -> None:
    ended(base_url, start(base_url, "demo.fail", after=1, delay=0.01))
    ended(base_url, start(base_url, "demo.noop"))
    open_console(page)
    page.select_option("#filters select[name=status]", "failed")
    expect(page).to_have_url(re.compile(r"#/\?status=failed$"))
    rows = page.locator("#rows tr")
    wait_for_rows(page, status="failed")

    # (Not demo.noop: other tests' noop jobs may fail, given arguments it does not take.)
    page.fill("#filters input[name=function]", "demo.none")
    page.press("#filters input[name=function]", "Enter")
    expect(page.locator("#empty")).to_be_visible()  # no such job, so none failed
    expect(rows).to_have_count(0)

    page.fill("#filters input[name=function]", "demo.fail")
    page.press("#filters input[name=function]", "Enter")
    wait_for_rows(page, status="failed", function="demo.fail")

    # A job that fails from now on joins the filtered list live, at the top.
    job_id = start(base_url, "demo.fail", after=1, delay=0.01)
    expect(page.locator(f"#row-{job_id}")).to_have_class("failed", timeout=10_000)
    assert rows.first.get_attribute("id") == f"row-{job_id}"

    # A count at the top is a filter too; and the filter survives a reload (the fragment).
    page.click("#counts button[data-status=finished]")
    expect(page).to_have_url(re.compile(r"#/\?status=finished$"))
    page.reload()
    expect(page.locator("#filters select[name=status]")).to_have_value("finished")
    wait_for_rows(page, status="finished")


def test_older_jobs_load_below_newest_first_without_repeats(page: Page, base_url: str) -> None:
    for _ in range(30):  # more than a page (25)
        start(base_url, "demo.noop")
    open_console(page, "#/?function=demo.noop")
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(25, timeout=10_000)
    page.click("#older")
    expect(rows).not_to_have_count(25, timeout=10_000)
    ids = rows.evaluate_all("rows => rows.map((r) => r.id)")
    created = rows.evaluate_all("rows => rows.map((r) => Number(r.dataset.created))")
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    assert created == sorted(created, reverse=True)


def test_detail_follows_a_job_live_with_its_log_output_and_chart(
    page: Page, base_url: str, shots: Path
) -> None:
    job_id = start(base_url, "demo.tokens", count=100, delay=0.05)
    open_console(page)
    page.fill("#find input[name=id]", job_id)
    page.press("#find input[name=id]", "Enter")
    expect(page).to_have_url(re.compile(f"#/job/{job_id}$"))
    detail = page.locator("article.detail")
    # A log line arrives while the job is still at work: the view is live, not a replay.
    page.wait_for_function(
        """() => document.querySelector("article.detail.running .log li")""", timeout=10_000
    )
    expect(detail.locator(".log li").first).to_contain_text("10 words so far")
    expect(detail).to_have_class("detail finished", timeout=15_000)
    expect(detail.locator(".log li")).to_have_count(10)
    expect(detail.locator(".output")).to_contain_text("w0 w1 w2")
    expect(detail.locator(".output")).to_contain_text("w99")
    expect(detail.locator(".arguments")).to_contain_text('"count": 100')
    expect(detail.locator(".timings")).to_contain_text("Ran for")
    # The percent over time: one point per snapshot, drawn as a line.
    # (13 snapshots: queued, started, 10 reports, finished; a stream may skip one or two.)
    chart = detail.locator("svg.progress-chart")
    drawn = int(chart.get_attribute("data-points") or "0")
    points = chart.locator("polyline").get_attribute("points") or ""
    assert drawn >= 8 and len(points.split()) == drawn
    # Ended: only retry and delete are offered.
    enabled = detail.locator(".actions button:enabled")
    expect(enabled).to_have_text(["Retry", "Delete"])
    shoot(page, shots, "console-detail.png", full_page=True)


def test_a_failed_job_shows_its_traceback_and_retry_starts_it_again(
    page: Page, base_url: str
) -> None:
    old = start(base_url, "demo.fail", after=1, delay=0.01)
    ended(base_url, old)
    open_console(page, f"#/job/{old}")
    error = page.locator("article.detail .error")
    expect(error.locator(".what")).to_have_text("ValueError: demo failure after 1 steps")
    traceback = error.locator(".traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text('raise ValueError(f"demo failure after {after} steps")')

    page.click("button[data-action=retry]")
    expect(page).not_to_have_url(re.compile(f"#/job/{old}$"))
    new = page.url.rsplit("/", 1)[1]
    detail = page.locator("article.detail")
    expect(detail.locator(".run a")).to_have_text(old)
    expect(detail).to_have_class("detail failed", timeout=10_000)
    assert httpx.get(f"{base_url}/jobs/{new}").json()["retry_of"] == old
    assert httpx.get(f"{base_url}/jobs/{old}").json()["status"] == "failed"  # final stays


def test_delete_asks_twice_then_removes_the_job(page: Page, base_url: str) -> None:
    job_id = start(base_url, "demo.noop")
    ended(base_url, job_id)
    open_console(page)
    expect(page.locator(f"#row-{job_id}")).to_be_visible(timeout=10_000)
    page.click(f"#row-{job_id} a")
    delete = page.locator("button[data-action=delete]")
    expect(delete).to_be_enabled(timeout=10_000)
    delete.click()
    expect(delete).to_have_text("Really delete?")
    assert httpx.get(f"{base_url}/jobs/{job_id}").status_code == 200  # not yet
    delete.click()
    expect(page.locator("#notice")).to_have_text(f"Deleted job {job_id}.")
    expect(page).to_have_url(re.compile(r"#/$"))
    expect(page.locator(f"#row-{job_id}")).to_have_count(0)
    assert httpx.get(f"{base_url}/jobs/{job_id}").status_code == 404


def test_pause_resume_and_cancel_follow_the_status_and_canceled_looks_apart(
    page: Page, base_url: str
) -> None:
    job_id = start(base_url, "demo.count", steps=100, delay=0.1)
    open_console(page, f"#/job/{job_id}")
    detail = page.locator("article.detail")
    expect(detail).to_have_class("detail running", timeout=10_000)
    enabled = detail.locator(".actions button:enabled")
    expect(enabled).to_have_text(["Cancel", "Pause"])
    row = page.locator(f"#row-{job_id}")
    running = row.locator(".badge").evaluate("b => getComputedStyle(b).borderStyle")
    page.click("button[data-action=pause]")
    expect(detail).to_have_class("detail paused", timeout=10_000)
    expect(enabled).to_have_text(["Cancel", "Resume"])
    page.click("button[data-action=resume]")
    expect(detail).to_have_class("detail running", timeout=10_000)
    page.click("button[data-action=cancel]")
    expect(detail).to_have_class("detail canceled", timeout=10_000)
    expect(enabled).to_have_text(["Retry", "Delete"])
    expect(row).to_have_class("canceled")
    look = "b => [getComputedStyle(b).borderStyle, getComputedStyle(b).textDecorationLine]"
    assert running == "solid"
    assert row.locator(".badge").evaluate(look) == ["dashed", "line-through"]


def test_workers_view_shows_the_worker_and_a_live_jobs_per_minute_chart(
    page: Page, base_url: str, shots: Path
) -> None:
    ended(base_url, start(base_url, "demo.noop"))
    open_console(page, "#/workers")
    expect(page.locator("#workers")).to_contain_text("demo.tokens", timeout=10_000)
    chart = page.locator("svg.minutes-chart")
    expect(chart).to_have_attribute("data-minutes", "60")
    finished = int(chart.get_attribute("data-finished") or "0")
    assert finished >= 1 and chart.locator("rect.finished").count() >= 1
    expect(page.locator("#queue-depth")).to_have_text(re.compile(r"^\d+$"))
    # Live: a job that finishes now shows in the chart without a reload.
    ended(base_url, start(base_url, "demo.noop"))
    expect(chart).not_to_have_attribute("data-finished", str(finished), timeout=10_000)
    assert int(chart.get_attribute("data-finished") or "0") > finished
    shoot(page, shots, "console-workers.png")


def test_secured_console_signs_in_acts_with_its_csrf_token_and_signs_out(
    new_context: Callable[..., BrowserContext], secured: str
) -> None:
    context = new_context(secured)
    page = context.new_page()
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
    page.goto("/dashboard")
    form = page.locator("#signin")
    expect(form).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert refused == []  # it asked GET /session, not for data it may not read

    page.fill("#signin input[name=api_key]", "wrong")
    page.press("#signin input[name=api_key]", "Enter")
    expect(form.locator(".error")).to_contain_text("not one of this jobhub's keys")
    page.fill("#signin input[name=api_key]", KEY)
    page.click("#signin button[type=submit]")
    expect(page.locator("#live")).to_have_text("● live", timeout=10_000)  # the stream, by cookie
    (cookie,) = [c for c in context.cookies() if c["name"] == "jobhub_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read it
    assert page.locator("#signin input[name=api_key]").input_value() == ""

    # Start a job for later with the form (a POST with the CSRF token), then cancel it.
    page.click("details.start summary")
    page.fill("#start input[name=function]", "demo.count")
    page.fill("#start input[name=kwargs]", '{"steps": 3, "delay": 0.1}')
    page.fill("#start input[name=defer]", "600")
    page.click("#start button[type=submit]")
    detail = page.locator("article.detail")
    expect(detail).to_have_class("detail queued", timeout=10_000)
    expect(detail.locator(".message")).to_contain_text("starts at")
    expect(detail.locator(".timings")).to_contain_text("Scheduled for")
    page.click("button[data-action=cancel]")
    expect(detail).to_have_class("detail canceled", timeout=10_000)
    job_id = page.url.rsplit("/", 1)[1]
    page.click("nav a[data-view=jobs]")
    expect(page.locator(f"#row-{job_id}")).to_have_class("canceled", timeout=10_000)

    # Signed out elsewhere (another tab): the next read is refused, and the form is back.
    page.evaluate("fetch('session', { method: 'DELETE' })")
    expect(form.locator(".note")).to_contain_text("session has ended", timeout=10_000)
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#signin input[name=api_key]", KEY)
    page.press("#signin input[name=api_key]", "Enter")
    expect(page.locator(f"#row-{job_id}")).to_have_class("canceled", timeout=10_000)

    page.click("#account button")
    expect(form).to_be_visible()
    expect(form.locator(".note")).to_have_text("Signed out.")
    expect(page.locator("#app")).to_be_hidden()
    assert [c for c in context.cookies() if c["name"] == "jobhub_session"] == []
    status = page.evaluate("fetch('stats').then((r) => r.status)")
    assert status == 401


def test_the_console_fits_a_phone(
    new_context: Callable[..., BrowserContext], base_url: str, shots: Path
) -> None:
    ended(base_url, start(base_url, "demo.fail", after=1, delay=0.01))
    start(base_url, "demo.count", steps=20, delay=0.1)
    page = new_context(base_url, viewport=PHONE, is_mobile=True).new_page()
    open_console(page)
    expect(page.locator("#rows tr").first).to_be_visible(timeout=10_000)
    # No sideways scrolling: the table became a stack of cards.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    first = page.locator("#rows tr").first.bounding_box()
    assert first is not None and first["width"] <= PHONE["width"]
    shoot(page, shots, "console-phone.png")


def test_the_list_in_a_wide_window_for_the_readme(page: Page, base_url: str, shots: Path) -> None:
    ended(base_url, start(base_url, "demo.fail", after=2, delay=0.01))
    tokens = start(base_url, "demo.tokens", count=200, delay=0.05)
    running = start(base_url, "demo.count", steps=50, delay=0.1)
    canceled = start(base_url, "demo.count", steps=50, delay=0.1)
    open_console(page)
    expect(page.locator(f"#row-{running}")).to_have_class("running", timeout=10_000)
    httpx.post(f"{base_url}/jobs/{canceled}/cancel")
    expect(page.locator(f"#row-{canceled}")).to_have_class("canceled", timeout=10_000)
    expect(page.locator("#counts button").first).to_be_visible()
    zone = page.locator("#zone").inner_text()
    assert re.search(r"UTC[+-]\d\d:\d\d", zone), zone  # the times say which zone they are in
    shoot(page, shots, "console.png")
    for job_id in (tokens, running):
        httpx.post(f"{base_url}/jobs/{job_id}/cancel")
