"""One Chromium per test module, and a page on the session's stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.browser import CHROMIUM, FLAGS, HAVE_CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail(f"CI=true but no browser at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    yield page
    context.close()
