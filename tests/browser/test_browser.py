"""The demo page and jobhub.js in a real headless Chromium, against the real stack.

Debian's Chromium at /usr/bin/chromium, driven by Playwright (no browser download). Where
it cannot be had these tests are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from jobhub import Settings, create_app
from jobhub.dev.server import free_port
from tests.support.browser import needs_chromium, serve, wait_for
from tests.support.readme import blocks, python_block
from tests.support.servers import ThreadedServer

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def secured(redis_url: str, base_url: str) -> Iterator[str]:
    """The app with an API key and job tokens; the session stack's worker runs the jobs."""
    settings = Settings(redis_url=redis_url, api_keys=("page-key",), token_secret="s3cret")
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url


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


def test_the_readme_page_snippet_runs_in_a_classic_script(page: Page, base_url: str) -> None:
    (snippet,) = [block.code for block in blocks("html") if "countToFive" in block.code]
    logged: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    serve(page, f"{base_url}/readme.html", f"<!doctype html><title>snippet</title>{snippet}")
    page.goto("/readme.html")
    wait_for(lambda: any(line.startswith("result") for line in logged), 30, "the result", page)
    assert errors == []  # no SyntaxError: the snippet is valid in a classic <script>
    assert 'result {"steps":5}' in logged
    # onUpdate saw it at work (a stream may skip states, never the final one).
    assert any(line.startswith("running ") for line in logged), logged


def test_the_readme_worker_snippet_runs_in_a_web_worker(page: Page, base_url: str) -> None:
    (snippet,) = [block.code for block in blocks("js") if block.name == "worker.js"]
    page.goto("/")
    serve(page, f"{base_url}/worker.js", snippet, "text/javascript")
    final = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const worker = new Worker("/worker.js");
            worker.onmessage = ({ data }) => {
                if (["finished", "failed", "canceled"].includes(data.status) && data.result) {
                    worker.terminate();
                    resolve(data);
                }
            };
            worker.onerror = (event) => reject(event.message);
            worker.postMessage({ function: "demo.count", kwargs: { steps: 2, delay: 0.1 } });
        })"""
    )
    assert final["status"] == "finished" and final["result"] == {"steps": 2}


def test_a_blob_worker_finds_the_api_from_the_script_url_it_imports(page: Page) -> None:
    page.goto("/")
    final = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const code = `
                importScripts("${location.origin}/static/jobhub.js");
                jobhub.start("demo.count", { kwargs: { steps: 2, delay: 0.1 } })
                  .then((job) => jobhub.watch(job.job_id))
                  .then((snapshot) => postMessage({ snapshot, baseUrl: jobhub.baseUrl }),
                        (error) => postMessage({ error: String(error) }));`;
            const blob = new Blob([code], { type: "text/javascript" });
            const worker = new Worker(URL.createObjectURL(blob));
            worker.onmessage = (event) => { worker.terminate(); resolve(event.data); };
            worker.onerror = (event) => reject(event.message);
        })"""
    )
    assert "error" not in final, final
    assert final["snapshot"]["result"] == {"steps": 2}
    assert final["baseUrl"] == page.evaluate("location.origin")


def test_a_data_worker_without_base_url_is_told_what_to_pass(page: Page) -> None:
    page.goto("/")
    source = page.evaluate("() => fetch('/static/jobhub.js').then((r) => r.text())")
    message = page.evaluate(
        """(source) => new Promise((resolve) => {
            const code = source + `
                jobhub.start("demo.count").then(() => postMessage("started?"),
                                                (error) => postMessage(error.message));`;
            const worker = new Worker("data:text/javascript," + encodeURIComponent(code));
            worker.onmessage = (event) => { worker.terminate(); resolve(event.data); };
        })""",
        source,
    )
    assert "pass options.baseUrl or set jobhub.baseUrl" in message


def test_the_readme_mount_snippet_serves_jobhub_under_a_prefix(
    browser: Browser, redis_url: str, base_url: str, tmp_path: Path
) -> None:
    """The README's app.py, run by uvicorn: the pages, the client and the API all under
    /jobhub/, and nothing asked of the origin's root. The session's worker runs the jobs."""
    (tmp_path / "app.py").write_text(python_block("app.py"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)],
        cwd=tmp_path, env={**os.environ, "REDIS_URL": redis_url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(root + "/jobhub/healthz"), 30, "the mounted app")
        context = browser.new_context()
        page = context.new_page()
        paths: list[str] = []
        page.on("request", lambda r: paths.append(r.url.removeprefix(root)))
        page.goto(root + "/jobhub/")
        page.fill("#steps", "2")
        page.click("button[data-function='demo.count']")
        job = page.locator(".job").first
        expect(job).to_have_class("job finished", timeout=20_000)
        expect(job.locator(".result")).to_contain_text('"steps": 2')
        page.goto(root + "/jobhub/dashboard")
        expect(page.locator("#live")).to_have_text("● live", timeout=10_000)
        expect(page.locator("#rows tr").first).to_be_visible(timeout=10_000)
        context.close()
    finally:
        server.terminate()
        server.wait(20)
    assert any(path.startswith("/jobhub/events?jobs=") for path in paths)  # streamed there
    assert [p for p in paths if p.startswith("/") and not p.startswith("/jobhub/")] == []


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Pages(BaseHTTPRequestHandler):
    """Another site's web server, serving the pages a test puts in ``pages``."""

    pages: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path, "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def another_site() -> tuple[str, dict[str, str], ThreadingHTTPServer]:
    """A real server (Chromium keeps pages it cannot place on the network, such as routed
    ones, from loading anything from loopback addresses) named localhost, so that its
    origin differs from jobhub's 127.0.0.1."""
    pages: ClassVar[dict[str, str]] = {}
    handler = type("SitePages", (Pages,), {"pages": pages})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://localhost:{server.server_address[1]}", pages, server


@pytest.fixture
def cors(redis_url: str, base_url: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """jobhub letting one other site in; that site's origin, and its pages to fill."""
    origin, pages, site = another_site()
    settings = Settings(redis_url=redis_url, cors_origins=(origin,))
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url, origin, pages
    site.shutdown()
    site.server_close()


def test_a_page_on_a_listed_origin_uses_jobhub_with_the_readme_script_tag(
    browser: Browser, cors: tuple[str, str, dict[str, str]]
) -> None:
    jobhub_url, page_origin, pages = cors
    (tag,) = [block.code for block in blocks("html") if "jobs.example.com" in block.code]
    page_html = tag.replace("https://jobs.example.com", jobhub_url) + (
        "<script>jobhub.start('demo.count', { kwargs: { steps: 2, delay: 0.1 } })"
        ".then((job) => jobhub.watch(job.job_id))"
        ".then((s) => { document.title = JSON.stringify(s.result); },"
        " (e) => { document.title = 'error ' + e.message; });</script>"
    )
    pages["/page.html"] = page_html
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{page_origin}/page.html")
    expect(page).to_have_title('{"steps":2}', timeout=20_000)
    context.close()


def test_a_page_on_another_origin_is_refused_and_the_refusal_is_logged(
    browser: Browser, cors: tuple[str, str, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    jobhub_url, _, _ = cors
    stranger, pages, site = another_site()
    pages["/page.html"] = f'<script src="{jobhub_url}/static/jobhub.js"></script>'
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{stranger}/page.html")
    outcome = page.evaluate(
        "() => jobhub.start('demo.count').then(() => 'started', (e) => e.name + ': ' + e.message)"
    )
    context.close()
    site.shutdown()
    site.server_close()
    assert outcome.startswith("TypeError")  # the browser withheld the answer: Failed to fetch
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    refusals = [m for m in warnings if m.startswith("refused a cross-origin request")]
    assert refusals == [
        f"refused a cross-origin request: origin {stranger} is not in JOBHUB_CORS_ORIGINS"
    ]
    preflight = httpx.options(
        jobhub_url + "/jobs",
        headers={"Origin": stranger, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert preflight.json()["error"]["type"] == "CorsRefused"


def test_demo_list_keeps_its_order_across_refreshes(page: Page) -> None:
    page.goto("/")
    page.evaluate("localStorage.clear()")
    page.reload()
    page.fill("#steps", "1")
    for _ in range(3):
        count = page.locator(".job").count()
        page.click("button[data-function='demo.count']")
        expect(page.locator(".job")).to_have_count(count + 1)
    started = page.locator(".job code").all_inner_texts()
    for _ in range(2):  # it used to flip on every refresh
        page.reload()
        expect(page.locator(".job")).to_have_count(3)
        assert page.locator(".job code").all_inner_texts() == started


def test_pages_load_without_errors_or_a_favicon_request(page: Page) -> None:
    failures: list[str] = []
    page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
    page.on("requestfailed", lambda r: failures.append(r.url))
    page.on("response", lambda r: failures.append(r.url) if r.status >= 400 else None)
    for path in ("/", "/dashboard"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    assert failures == []


def test_dashboard_times_are_the_readers_local_time_and_say_so(
    browser: Browser, base_url: str
) -> None:
    context = browser.new_context(base_url=base_url, timezone_id="Asia/Kathmandu")  # UTC+5:45
    page = context.new_page()
    job_id = httpx.post(base_url + "/jobs", json={"function": "demo.noop"}).json()["job_id"]
    page.goto("/dashboard")
    cell = page.locator(f"#row-{job_id} time")
    expect(cell).to_be_visible(timeout=10_000)
    assert "your time" in page.locator("#jobs th").last.text_content().lower()  # CSS upper-cases it
    stamp = cell.get_attribute("datetime")
    assert stamp is not None and stamp.endswith("Z")
    expected = page.evaluate("(s) => new Date(s).toLocaleTimeString()", stamp)
    expect(cell).to_have_text(expected)
    assert stamp[11:19] not in cell.inner_text()  # not the UTC clock
    context.close()
