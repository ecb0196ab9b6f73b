"""The console's History page in a real headless Chromium: offered only where the archive is
on, its filters, its two charts, older pages, and a bulk retry that counts, asks, then
retries; against a real app (signed in, so each change carries its CSRF token), the
session's Redis and worker, and an archive in SQLite filled with known rows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from jobhub import Settings, create_app
from tests.support.archive_rows import insert, job_row, migrated
from tests.support.browser import needs_chromium
from tests.support.servers import ThreadedServer

pytestmark = needs_chromium

KEY = "history-page-key"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def sample(i: int) -> dict[str, Any]:
    status = ("finished", "failed", "canceled")[i % 3]
    return job_row(
        f"past-{i:03d}",
        function=("demo.noop", "reports.build")[i % 2],
        status=status,
        ended_at=NOW - timedelta(minutes=30 * i + 5),
        run_seconds=0.1 * (i % 17 + 1),
        error={"type": "ValueError", "detail": f"bad {i}"} if status == "failed" else None,
    )


ROWS = [sample(i) for i in range(120)]
NOOP_FAILED = [r["id"] for r in ROWS if r["function"] == "demo.noop" and r["status"] == "failed"]


@pytest.fixture(scope="module")
def archived(
    redis_url: str, base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app with an API key and an archive; the session stack's worker runs retries."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('history') / 'archive.db'}"

    async def fill() -> None:
        engine = await migrated(url)
        await insert(engine, ROWS)
        await engine.dispose()

    # Playwright's sync API holds this thread's event loop: fill the archive from another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, fill()).result()
    settings = Settings(
        redis_url=redis_url, api_keys=(KEY,), token_secret="history-secret", archive_url=url
    )
    with ThreadedServer(create_app(settings)) as web:
        yield web.base_url


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def make(base_url: str) -> BrowserContext:
        context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
        context.on("weberror", lambda error: errors.append(str(error.error)))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert errors == []


def signed_in(context: BrowserContext) -> Page:
    page = context.new_page()
    page.goto("/dashboard")
    page.fill("#signin input[name=api_key]", KEY)
    page.press("#signin input[name=api_key]", "Enter")
    expect(page.locator("#live")).to_have_text("● live", timeout=10_000)
    return page


def test_history_filters_charts_pages_and_bulk_retry(
    new_context: Callable[..., BrowserContext], archived: str, tmp_path: Path
) -> None:
    page = signed_in(new_context(archived))
    link = page.locator("#history-link")
    expect(link).to_be_visible(timeout=10_000)
    link.click()
    rows = page.locator("#history-rows tr")
    expect(rows).to_have_count(50, timeout=10_000)  # a page, newest first
    assert rows.first.get_attribute("id") == "archived-past-000"
    page.click("#history-older")
    expect(rows).to_have_count(100)
    assert len(set(rows.evaluate_all("(rows) => rows.map((r) => r.id)"))) == 100

    # The charts: jobs per day by status (every row, as the page's range holds them all),
    # and a p95 line per function.
    chart = page.locator("#history-buckets svg.buckets-chart")
    expect(chart).to_be_visible()
    failed = sum(1 for r in ROWS if r["status"] == "failed")
    expect(chart).to_have_attribute("data-failed", str(failed))
    assert int(chart.get_attribute("data-buckets") or 0) >= 3  # 60 hours: three days or four
    runtimes = page.locator("#history-runtimes svg.runtime-chart")
    expect(runtimes).to_have_attribute("data-functions", "2")
    expect(page.locator("#history-functions tr")).to_have_count(2)
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)

    # An archived job opens in the usual detail view, read from the archive.
    page.click("#archived-past-001 a")
    expect(page.locator("article.detail")).to_have_class("detail failed", timeout=10_000)
    expect(page.locator("article.detail")).to_contain_text("ValueError")
    page.go_back()
    expect(rows).to_have_count(50, timeout=10_000)

    # Filters: into the fragment, and the rows follow.
    page.fill("#history-filters input[name=function]", "demo.noop")
    page.select_option("#history-filters select[name=status]", "failed")
    page.click("#history-filters button[type=submit]")
    expect(rows).to_have_count(len(NOOP_FAILED), timeout=10_000)
    assert set(rows.evaluate_all("(rows) => rows.map((r) => r.dataset.status)")) == {"failed"}
    assert "function=demo.noop" in page.url and "status=failed" in page.url

    # Bulk retry: the count first, then a confirmation, then the retries.
    retry = page.locator("#history-retry")
    retry.locator("button.count").click()
    expect(retry.locator(".said")).to_contain_text(
        f"{len(NOOP_FAILED)} failed jobs would be retried", timeout=10_000
    )
    confirm = retry.locator(".confirm button.danger")
    expect(confirm).to_have_text(f"Retry {len(NOOP_FAILED)} jobs")
    confirm.click()
    expect(retry.locator(".said")).to_contain_text(
        f"Retried {len(NOOP_FAILED)} jobs: {len(NOOP_FAILED)} started", timeout=20_000
    )
    # A hostile filter is said, not a broken page.
    page.fill("#history-filters input[name=since]", "yesterday")
    page.click("#history-filters button[type=submit]")
    expect(page.locator("#history-empty")).to_contain_text("Not a filter the archive takes")


def test_history_is_offered_only_where_the_archive_is_on(
    new_context: Callable[..., BrowserContext], base_url: str
) -> None:
    page = new_context(base_url).new_page()
    page.goto("/dashboard#/history")
    expect(page.locator("#live")).to_have_text("● live", timeout=10_000)
    page.wait_for_function("() => document.querySelector('#rows tr') !== null || true")
    expect(page.locator("#history-link")).to_be_hidden()
    expect(page.locator("#history-view")).to_be_hidden()
