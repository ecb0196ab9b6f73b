"""The demo page where the API needs credentials, and where the workers offer none of its
functions: it works with a signed-in console's session, and otherwise says once, on the
page, what is missing. And the console's notices, empty log, chart axis and header counts
as a job changes under them.

Debian's Chromium at /usr/bin/chromium, as in test_browser.py; skipped where it is missing,
except under CI=true.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from jobhub import Client, Settings, create_app
from tests.browser.test_console import ended, open_console, start
from tests.support.browser import needs_chromium, wait_for
from tests.support.servers import ThreadedServer

KEY = "demo-page-key"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def secured(redis_url: str, base_url: str) -> Iterator[str]:
    """The app with an API key; the session stack's worker runs its jobs."""
    settings = Settings(redis_url=redis_url, api_keys=(KEY,), token_secret="demo-secret")
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url


@pytest.fixture(scope="module")
def bare(redis_url: str, base_url: str) -> Iterator[str]:
    """The app on a queue no worker serves: a project whose workers offer no demo.*."""
    settings = Settings(redis_url=redis_url, queue_name="jobhub-test:bare")
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url


def refuse(dialog: Dialog, seen: list[str]) -> None:
    seen.append(dialog.message)
    dialog.dismiss()


@pytest.fixture
def secured_page(browser: Browser, secured: str) -> Iterator[Page]:
    context = browser.new_context(base_url=secured)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: refuse(dialog, dialogs))
    yield page
    context.close()
    assert dialogs == []  # it says what is missing on the page, never in an alert


def test_the_demo_page_asks_to_sign_in_then_runs_and_controls_jobs_with_the_session(
    secured_page: Page,
) -> None:
    page = secured_page
    page.goto("/")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("needs an API key", timeout=10_000)
    expect(notice.locator("a[href=dashboard]")).to_be_visible()
    expect(page.locator("button[data-function='demo.count']")).to_be_disabled()

    # Signed in on the console's form: the session cookie and its CSRF token do the rest.
    page.goto("/dashboard")
    page.fill("#signin input[name=api_key]", KEY)
    page.click("#signin button[type=submit]")
    expect(page.locator("#live")).to_have_text("● live", timeout=10_000)
    page.goto("/")
    page.evaluate("localStorage.clear()")
    page.reload()
    expect(notice).to_be_hidden()
    page.fill("#steps", "3")
    page.click("button[data-function='demo.count']")
    job = page.locator(".job").first
    expect(job).to_have_attribute("data-status", "finished", timeout=20_000)
    assert job.locator("progress").evaluate("bar => bar.value") == 100

    # A change of a job: with the job's token jobhub.js kept from POST /jobs.
    page.click("button[data-function='long']")
    long = page.locator(".job").first
    expect(long).to_have_attribute("data-status", "running", timeout=20_000)
    long.locator("button.cancel").click()
    expect(long).to_have_attribute("data-status", "canceled", timeout=10_000)

    # After a refresh jobhub.js holds no token: the console session acts, with its CSRF token.
    page.click("button[data-function='long']")
    expect(page.locator(".job").first).to_have_attribute("data-status", "running", timeout=20_000)
    page.reload()
    again = page.locator(".job").first
    expect(again).to_have_attribute("data-status", "running", timeout=10_000)
    again.locator("button.cancel").click()
    expect(again).to_have_attribute("data-status", "canceled", timeout=10_000)
    expect(notice).to_be_hidden()


def test_jobhub_js_starts_a_job_with_the_console_session_and_its_csrf_token(
    secured_page: Page,
) -> None:
    page = secured_page
    page.goto("/static/jobhub.js")  # any page of the origin will do
    page.add_script_tag(url="/static/jobhub.js")
    assert page.evaluate("jobhub.session()") == {
        "secured": True,
        "signed_in": False,
        "csrf": None,
        "archive": False,
    }
    refused = page.evaluate(
        "jobhub.start('demo.count').then(() => 'started', (e) => [e.name, e.status])"
    )
    assert refused == ["RequestError", 401]
    status = page.evaluate(
        "(key) => fetch('/session', { method: 'POST', body: JSON.stringify({ api_key: key }),"
        " headers: { 'content-type': 'application/json' } })"
        ".then((r) => r.status)",
        KEY,
    )
    assert status == 200
    final = page.evaluate(
        """jobhub.start("demo.count", { kwargs: { steps: 2, delay: 0.05 } })
            .then((job) => jobhub.watch(job.job_id))"""
    )
    assert final["status"] == "finished" and final["result"] == {"steps": 2}


def test_jobhub_js_starts_jobs_and_batches_as_a_scoped_tokens_user(
    secured_page: Page, secured: str
) -> None:
    # No session and no API key in the page: only the token its backend minted.
    with Client(secured, api_key=KEY) as hub:
        grant = hub.token(scope={"tags": ["user:7"]}, actions=["read", "start", "cancel"])
    page = secured_page
    page.goto("/static/jobhub.js")
    page.add_script_tag(url="/static/jobhub.js")
    final = page.evaluate(
        """(token) => jobhub.start("demo.count", { kwargs: { steps: 2, delay: 0.05 }, token })
            .then((job) => jobhub.watch(job.job_id))""",
        grant.token,
    )
    assert final["status"] == "finished" and final["tags"] == ["user:7"]
    batch = page.evaluate(
        """(token) => jobhub.startBatch([{ function: "demo.noop" }, { function: "demo.noop" }],
                                        { token })
            .then((started) => jobhub.watchBatch(started.batch_id))""",
        grant.token,
    )
    assert batch["status"] == "finished" and batch["counts"]["finished"] == 2


def test_without_the_demo_functions_the_page_says_so_once(browser: Browser, bare: str) -> None:
    context = browser.new_context(base_url=bare)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: refuse(dialog, dialogs))
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto("/")
    count = page.locator("button[data-function='demo.count']")
    count.click()
    notice = page.locator("#notice")
    expect(notice).to_contain_text("do not offer the demo functions", timeout=10_000)
    expect(notice).to_contain_text("is a worker running?")
    for name in ("demo.count", "demo.tokens", "demo.fail", "long"):
        expect(page.locator(f"button[data-function='{name}']")).to_be_disabled()
    count.click(force=True)  # a disabled button asks nothing more
    page.press("#steps", "Enter")
    assert len(posts) == 1
    assert page.locator(".job").count() == 0
    context.close()
    assert dialogs == []


def test_a_console_notice_speaks_of_its_view_and_the_next_navigation_clears_it(
    page: Page, base_url: str
) -> None:
    job_id = start(base_url, "demo.noop")
    ended(base_url, job_id)
    open_console(page, f"#/job/{job_id}")
    delete = page.locator("button[data-action=delete]")
    expect(delete).to_be_enabled(timeout=10_000)
    delete.click()
    delete.click()
    notice = page.locator("#notice")
    expect(notice).to_have_text(f"Deleted job {job_id}.")  # on the list it went back to
    expect(page).to_have_url(re.compile(r"#/$"))
    page.click("nav a[data-view=workers]")
    expect(notice).to_have_text("")


def test_an_ended_job_without_log_lines_says_it_has_none_not_none_yet(
    page: Page, base_url: str
) -> None:
    job_id = start(base_url, "demo.noop")
    ended(base_url, job_id)
    open_console(page, f"#/job/{job_id}")
    detail = page.locator("article.detail")
    expect(detail).to_have_class("detail finished", timeout=10_000)
    expect(detail.locator(".live p.none").first).to_have_text("No log lines.")
    expect(detail).not_to_contain_text("No log lines yet.")


def test_the_workers_chart_axis_reads_the_console_clock(page: Page, base_url: str) -> None:
    ended(base_url, start(base_url, "demo.noop"))
    open_console(page, "#/workers")
    chart = page.locator("svg.minutes-chart")
    expect(chart).to_have_attribute("data-minutes", "60", timeout=10_000)
    newest = chart.locator("g.minute").last.get_attribute("data-minute")
    # The console's clock (console/time.js): the viewer's toLocaleTimeString().
    expected = page.evaluate("(m) => new Date(m * 1000).toLocaleTimeString()", int(newest or 0))
    expect(chart.locator("text.tick").last).to_have_text(expected)


def test_the_header_counts_are_read_again_when_the_shown_job_changes_status(
    page: Page, base_url: str
) -> None:
    job_id = start(base_url, "demo.count", steps=1, delay=0.1)
    ended(base_url, job_id)
    deferred = httpx.post(
        f"{base_url}/jobs",
        json={"function": "demo.count", "kwargs": {"steps": 1}, "defer_seconds": 600},
    ).json()["job_id"]
    open_console(page, f"#/job/{deferred}")
    detail = page.locator("article.detail")
    expect(detail).to_have_class("detail queued", timeout=10_000)
    expect(page.locator("#counts .chip.canceled")).to_have_count(1, timeout=10_000)
    reads: list[float] = []
    page.on(
        "request", lambda r: reads.append(time.monotonic()) if r.url.endswith("/stats") else None
    )
    asked = time.monotonic()
    assert httpx.post(f"{base_url}/jobs/{deferred}/cancel").status_code == 200
    expect(detail).to_have_class("detail canceled", timeout=10_000)
    # Read at once, not at the next of the regular reads (every 3 s).
    wait_for(lambda: any(at > asked for at in reads), 1.0, "a read of /stats", page)
    expect(page.locator("#counts .chip.canceled .count")).to_have_text(
        str(
            page.evaluate(
                "fetch('stats').then((r) => r.json()).then((s) => "
                "s.ended_per_minute.reduce((n, m) => n + m.canceled, 0))"
            )
        )
    )
