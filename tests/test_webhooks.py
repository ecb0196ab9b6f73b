"""Signed webhooks on a job's end, with retries, to a real receiver; refused targets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub import Settings, create_app
from jobhub.webhooks import SIGNATURE_HEADER, sign, verify

from .conftest import WEBHOOK_SECRET, ThreadedServer
from .helpers import wait_for


class Receiver:
    """Records what it is sent; fails the first ``failures`` calls, or answers slowly."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str]] = []
        self.failures = 0
        self.delay = 0.0
        self.answered = 0

    async def hook(self, request: Request) -> Response:
        self.calls.append((await request.body(), request.headers.get(SIGNATURE_HEADER, "")))
        await asyncio.sleep(self.delay)
        self.answered += 1
        return Response(status_code=500 if len(self.calls) <= self.failures else 200)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()
    with ThreadedServer(Starlette(routes=[Route("/hook", state.hook, methods=["POST"])])) as web:
        yield state, web.base_url + "/hook"


async def start(client: httpx.AsyncClient, callback_url: str, **kwargs: Any) -> str:
    body = {
        "function": "demo.count",
        "kwargs": {"steps": 2, "delay": 0.05},
        "callback_url": callback_url,
    }
    response = await client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def test_final_snapshot_is_posted_signed_and_retried_until_accepted(
    client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.failures = 2
    job_id = await start(client, url)
    final = await wait_for(client, job_id)
    async with asyncio.timeout(15):
        while len(state.calls) < 3:
            await asyncio.sleep(0.05)
    for body, signature in state.calls:
        assert json.loads(body) == final
        assert verify(body, signature, WEBHOOK_SECRET)
        assert not verify(body, signature, "another-secret")
        assert not verify(body.replace(b"finished", b"failed"), signature, WEBHOOK_SECRET)
        assert not verify(body, signature, WEBHOOK_SECRET, now=time.time() + 3600)  # a replay
    history = (await client.get(f"/jobs/{job_id}/history")).json()
    attempts = [entry["webhook"] for entry in history if "webhook" in entry]
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    await asyncio.sleep(0.5)
    assert len(state.calls) == 3  # accepted: not sent again


async def test_a_slow_receiver_does_not_delay_the_job(
    client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.delay = 3.0
    job_id = await start(client, url)
    final = await wait_for(client, job_id, limit=2.5)
    assert final["status"] == "finished"
    assert state.answered == 0  # the delivery is still under way; the job was not held


async def test_callback_targets_are_checked(redis_url: str) -> None:
    refusing = Settings(redis_url=redis_url, webhook_secret="s")
    disabled = Settings(redis_url=redis_url)
    body: dict[str, Any] = {"function": "demo.noop"}
    with ThreadedServer(create_app(refusing)) as web, ThreadedServer(create_app(disabled)) as off:
        async with httpx.AsyncClient(base_url=web.base_url) as client:
            for url, detail in [
                ("http://127.0.0.1:9/hook", "non-public address"),
                ("http://[::1]/hook", "non-public address"),
                ("http://169.254.169.254/latest", "non-public address"),
                ("ftp://example.com/x", "http(s) URL"),
                ("not a url", "http(s) URL"),
            ]:
                response = await client.post("/jobs", json={**body, "callback_url": url})
                assert response.status_code == 400, url
                assert detail in response.json()["error"]["detail"]
        async with httpx.AsyncClient(base_url=off.base_url) as client:
            response = await client.post("/jobs", json={**body, "callback_url": "http://x/"})
            assert response.status_code == 400
            assert "not enabled" in response.json()["error"]["detail"]


def test_signatures_round_trip_and_expire() -> None:
    body = b'{"job_id":"j"}'
    header = sign(body, "k", timestamp=1_000_000)
    assert header.startswith("t=1000000,v1=")
    assert verify(body, header, "k", now=1_000_100)
    assert not verify(body, header, "k", now=1_000_400)  # outside the 300 s tolerance
    assert not verify(body, "garbage", "k")
    assert not verify(body, "t=abc,v1=00", "k")
