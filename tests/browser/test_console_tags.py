"""The console's list filtered by tag, and a job's tags in its detail, in a real Chromium
against the session's stack (open: no API key)."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import Page, expect

from tests.support.browser import needs_chromium

pytestmark = needs_chromium


def start(base_url: str, tags: list[str]) -> str:
    body = {"function": "demo.noop", "tags": tags}
    response = httpx.post(f"{base_url}/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def test_the_list_filters_by_tag_live_and_the_detail_shows_tags(page: Page, base_url: str) -> None:
    tag = f"user:{uuid.uuid4().hex[:8]}"
    mine = [start(base_url, [tag, "app:console"]) for _ in range(3)]
    start(base_url, ["user:someone-else"])
    page.goto("/dashboard")
    expect(page.locator("#live")).to_have_text("● live", timeout=10_000)
    page.fill("#filters input[name=tag]", tag)
    page.press("#filters input[name=tag]", "Enter")
    expect(page).to_have_url(re.compile(rf"#/\?tag={re.escape(tag.replace(':', '%3A'))}$"))
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(3, timeout=10_000)
    assert sorted(rows.evaluate_all("rows => rows.map((r) => r.id.slice(4))")) == sorted(mine)

    # A job created with the tag from now on joins the filtered list live; others do not.
    start(base_url, ["user:someone-else"])
    later = start(base_url, [tag])
    expect(page.locator(f"#row-{later}")).to_be_visible(timeout=10_000)
    expect(rows).to_have_count(4)

    page.click(f"#row-{later} a")
    tags = page.locator(".tags a.tag")
    expect(tags).to_have_text([tag], timeout=10_000)
    tags.first.click()  # a tag opens the list of its jobs
    expect(page).to_have_url(re.compile(rf"#/\?tag={re.escape(tag.replace(':', '%3A'))}$"))
    expect(rows).to_have_count(4, timeout=10_000)
