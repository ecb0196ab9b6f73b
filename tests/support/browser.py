"""Debian's Chromium at /usr/bin/chromium, driven by Playwright (no browser download).

Where it cannot be had the browser tests are skipped, except under CI=true, where that is
a failure (the ``browser`` fixture in tests/browser/conftest.py fails).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update",
]  # fmt: skip
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)
IN_CI = os.environ.get("CI") == "true"

needs_chromium = pytest.mark.skipif(
    not HAVE_CHROMIUM and not IN_CI,
    reason=f"no browser at {CHROMIUM}: as root, `apt-get install chromium` (scripts/test does)",
)


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, page: Page | None = None
) -> None:
    """Poll ``check`` until ``timeout``; with a ``page``, its events are delivered meanwhile
    (Playwright's sync API runs event handlers only inside its own calls)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if page is not None:
            page.wait_for_timeout(50)
        else:
            time.sleep(0.05)


def serve(page: Page, url: str, body: str, content_type: str = "text/html") -> None:
    """Answer ``url`` with ``body`` from the test, as if the origin served that file."""
    page.route(url, lambda route: route.fulfill(body=body, content_type=content_type))
