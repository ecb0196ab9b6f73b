"""API keys and job-scoped tokens, against a real uvicorn, Redis and ARQ worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from jobhub import ApiError, AsyncClient, ConfigError, Settings, create_app
from jobhub.server.auth import Tokens, instance_of, redact_query
from tests.support.servers import ThreadedServer

KEY = "test-key-1"
SECRET = "test-secret"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def secured(redis_url: str, base_url: str) -> Iterator[ThreadedServer]:
    # base_url: the session stack, whose worker runs the jobs these tests start.
    settings = Settings(redis_url=redis_url, api_keys=(KEY, "other-key"), token_secret=SECRET)
    with ThreadedServer(create_app(settings), log_level="info") as web:
        yield web


@pytest.fixture
async def anon(secured: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        yield client


async def start(client: httpx.AsyncClient, **kwargs: Any) -> httpx.Response:
    body = {"function": "demo.count", "kwargs": {"steps": 3, "delay": 0.1}}
    response = await client.post("/jobs", json=body, **kwargs)
    # The job's cookie would open it from now on, as in a browser; these tests pass their
    # credentials explicitly.
    client.cookies.clear()
    return response


async def test_starting_and_listing_need_an_api_key(anon: httpx.AsyncClient) -> None:
    missing = await start(anon)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "Unauthorized"
    wrong = await start(anon, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert (await anon.get("/jobs")).status_code == 401
    assert (await anon.get("/jobs", headers=HEADERS)).status_code == 200
    assert (await anon.get("/events")).status_code == 401
    started = await start(anon, headers=HEADERS)
    assert started.status_code == 202
    token = started.headers["jobhub-token"]
    job_id = started.json()["job_id"]
    assert token.startswith(job_id + ".")
    cookie = started.headers["set-cookie"]
    assert f"jobhub_token={token}" in cookie
    assert f"Path=/jobs/{job_id}" in cookie and "HttpOnly" in cookie


async def test_a_job_token_opens_its_job_by_header_cookie_or_query(anon: httpx.AsyncClient) -> None:
    started = await start(anon, headers=HEADERS)
    job_id, token = started.json()["job_id"], started.headers["jobhub-token"]
    path = f"/jobs/{job_id}"
    assert (await anon.get(path)).status_code == 401
    assert (await anon.get(path, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert (await anon.get(path, params={"token": token})).status_code == 200
    assert (await anon.get(path + "/history", params={"token": token})).status_code == 200
    async with httpx.AsyncClient(
        base_url=str(anon.base_url), cookies={"jobhub_token": token}
    ) as browser:
        assert (await browser.get(path)).status_code == 200
    assert (await anon.get(path, headers=HEADERS)).status_code == 200  # an API key opens all
    async with (
        asyncio.timeout(10),
        anon.stream("GET", path + "/events", params={"token": token}) as stream,
    ):
        assert stream.status_code == 200
        body = (await stream.aread()).decode()
    assert '"status":"finished"' in body


async def test_a_token_for_another_job_or_an_expired_one_is_403(anon: httpx.AsyncClient) -> None:
    first = await start(anon, headers=HEADERS)
    second = await start(anon, headers=HEADERS)
    other_token = second.headers["jobhub-token"]
    job_id, created = first.json()["job_id"], instance_of(first.content)
    path = f"/jobs/{job_id}"
    for credential in (
        other_token,
        Tokens(SECRET, ttl_seconds=60).issue(job_id, created, now=0),  # expired
        Tokens("another-secret", ttl_seconds=60).issue(job_id, created),  # forged
        "not-a-token",
        f"{job_id}.{created}.9999999999.é-not-ascii",
        f"{job_id}.9999999999.{first.headers['jobhub-token'].rsplit('.', 1)[1]}",  # 3 parts
    ):
        responses = [
            await anon.get(path, params={"token": credential}),
            await anon.get(path + "/events", params={"token": credential}),
        ]
        if credential.isascii():  # httpx sends no other header value
            bearer = {"Authorization": f"Bearer {credential}"}
            responses.append(await anon.post(path + "/cancel", headers=bearer))
        for response in responses:
            assert response.status_code == 403, credential
            assert response.json()["error"]["type"] == "Forbidden"


async def test_many_jobs_stream_takes_one_token_per_job(anon: httpx.AsyncClient) -> None:
    jobs = [await start(anon, headers=HEADERS) for _ in range(2)]
    ids = ",".join(j.json()["job_id"] for j in jobs)
    tokens = ",".join(j.headers["jobhub-token"] for j in jobs)
    assert (await anon.get("/events", params={"jobs": ids})).status_code == 401
    swapped = ",".join(reversed(tokens.split(",")))
    assert (await anon.get("/events", params={"jobs": ids, "tokens": swapped})).status_code == 403
    async with (
        asyncio.timeout(10),
        anon.stream("GET", "/events", params={"jobs": ids, "tokens": tokens}) as stream,
    ):
        assert stream.status_code == 200
        body = (await stream.aread()).decode()
    assert body.count('"status":"finished"') == 2


async def test_cancel_with_the_job_token(anon: httpx.AsyncClient) -> None:
    started = await start(anon, headers=HEADERS)
    token = started.headers["jobhub-token"]
    response = await anon.post(
        f"/jobs/{started.json()['job_id']}/cancel", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code in (200, 409)  # 409 only if it already finished


async def test_tokens_never_reach_the_access_log(anon: httpx.AsyncClient) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    handler = Collect()
    access.addHandler(handler)
    try:
        started = await start(anon, headers=HEADERS)
        token = started.headers["jobhub-token"]
        path = f"/jobs/{started.json()['job_id']}"
        assert (await anon.get(path, params={"token": token})).status_code == 200
        # The gate decodes parameter names: "%74oken" is "token" to it, and opens the job.
        assert (await anon.get(f"{path}?%74oken={token}")).status_code == 200
        assert (await anon.get(f"{path}?to%6ben={token}&x=1")).status_code == 200
        async with asyncio.timeout(5):
            while sum(path in line for line in lines) < 3:
                await asyncio.sleep(0.01)
    finally:
        access.removeHandler(handler)
    assert any("?token=[redacted]" in line for line in lines), lines
    assert any("?%74oken=[redacted]" in line for line in lines), lines
    assert any("?to%6ben=[redacted]&x=1" in line for line in lines), lines
    assert not any(token in line for line in lines), lines


def test_redaction_reads_parameter_names_as_the_app_decodes_them() -> None:
    cases = {
        "/jobs/j?token=abc": "/jobs/j?token=[redacted]",
        "/jobs/j?%74oken=abc&x=1": "/jobs/j?%74oken=[redacted]&x=1",
        "/jobs/j?%74%6F%6B%65%6E=abc": "/jobs/j?%74%6F%6B%65%6E=[redacted]",
        "/events?jobs=a,b&tokens=t1,t2": "/events?jobs=a,b&tokens=[redacted]",
        "/x?token": "/x?token=[redacted]",
        "/x?a=1&token=abc&token=def": "/x?a=1&token=[redacted]&token=[redacted]",
        # Not token parameters, as the app reads them: left as they are.
        "/x?mytoken=1&token_=2&a=token=3": "/x?mytoken=1&token_=2&a=token=3",
        "/jobs/token=abc": "/jobs/token=abc",
    }
    for line, redacted in cases.items():
        assert redact_query(line) == redacted


def test_api_keys_need_a_token_secret() -> None:
    with pytest.raises(ConfigError, match="JOBHUB_TOKEN_SECRET"):
        Settings.from_env({"JOBHUB_API_KEYS": "k"})
    assert Settings.from_env({"JOBHUB_API_KEYS": "a, b", "JOBHUB_TOKEN_SECRET": "s"}).api_keys == (
        "a",
        "b",
    )


async def test_open_mode_warns_at_startup(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="jobhub.web"),
        ThreadedServer(create_app(Settings(redis_url=redis_url))),
    ):
        pass
    assert any("no JOBHUB_API_KEYS" in r.getMessage() for r in caplog.records)


async def test_python_client_uses_the_api_key_and_then_the_job_token(
    secured: ThreadedServer,
) -> None:
    async with AsyncClient(secured.base_url, api_key=KEY) as hub:
        job = await hub.submit("demo.count", steps=2, delay=0.05)
        final = await hub.wait(job.job_id, timeout=20)  # its stream, opened with the job token
        assert final.result == {"steps": 2}
    async with AsyncClient(secured.base_url) as anonymous:
        with pytest.raises(ApiError) as refused:
            await anonymous.submit("demo.count")
        assert refused.value.status_code == 401
