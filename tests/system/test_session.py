"""A browser console signing in with an API key: session cookie, CSRF, sign-out; against a
real uvicorn and Redis (the session stack's worker runs the jobs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from jobhub import Settings, create_app
from tests.support.servers import ThreadedServer

KEY = "console-key"


@pytest.fixture(scope="module")
def secured(redis_url: str, base_url: str) -> Iterator[ThreadedServer]:
    settings = Settings(redis_url=redis_url, api_keys=(KEY,), token_secret="session-secret")
    with ThreadedServer(create_app(settings)) as web:
        yield web


@pytest.fixture
async def browser(secured: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    # An httpx client keeps cookies as a browser does.
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        yield client


async def test_signing_in_opens_the_api_to_this_browser_until_it_signs_out(
    browser: httpx.AsyncClient,
) -> None:
    assert (await browser.get("/session")).json() == {
        "secured": True, "signed_in": False, "csrf": None, "archive": False
    }  # fmt: skip
    assert (await browser.get("/stats")).status_code == 401
    assert (await browser.post("/session", json={"api_key": "wrong"})).status_code == 401
    signed = await browser.post("/session", json={"api_key": KEY})
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    csrf = signed.json()["csrf"]
    assert csrf and (await browser.get("/session")).json()["csrf"] == csrf

    assert (await browser.get("/stats")).status_code == 200
    assert (await browser.get("/jobs")).status_code == 200
    body = {"function": "demo.count", "kwargs": {"steps": 50, "delay": 0.1}}
    # A change without the CSRF token is refused, even with the cookie.
    refused = await browser.post("/jobs", json=body)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]["detail"]
    assert (
        await browser.post("/jobs", json=body, headers={"X-CSRF-Token": "x"})
    ).status_code == 403
    started = await browser.post("/jobs", json=body, headers={"X-CSRF-Token": csrf})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    browser.cookies.delete("jobhub_token")  # the job's own cookie would open it too
    async with browser.stream("GET", f"/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200
    cancel = await browser.post(f"/jobs/{job_id}/cancel", headers={"X-CSRF-Token": csrf})
    assert cancel.status_code == 200

    assert (await browser.delete("/session")).status_code == 204
    assert (await browser.get("/session")).json()["signed_in"] is False
    assert (await browser.get("/stats")).status_code == 401


async def test_an_open_api_needs_no_sign_in(client: httpx.AsyncClient) -> None:
    assert (await client.get("/session")).json() == {
        "secured": False, "signed_in": False, "csrf": None, "archive": False
    }  # fmt: skip
    assert (await client.post("/session", json={"api_key": "x"})).json()["secured"] is False
    headers = {"content-type": "application/json"}
    assert (await client.post("/session", content=b"\xff", headers=headers)).status_code == 400
