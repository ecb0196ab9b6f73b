"""A batch's token opens the batch, its children and their streams, and nothing else; a
batch's callback_url gets one signed webhook when the batch ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub.dev.server import Stack
from jobhub.webhooks.deliveries import SIGNATURE_HEADER, verify
from tests.support.servers import WEBHOOK_SECRET, ThreadedServer

KEY = "batch-key-1"


def count(steps: int = 2) -> dict[str, object]:
    return {"function": "demo.count", "kwargs": {"steps": steps, "delay": 0.02}}


async def test_a_batch_token_opens_the_batch_its_children_and_streams_only(
    start_stack: Callable[..., Stack],
) -> None:
    env = {"JOBHUB_API_KEYS": KEY, "JOBHUB_TOKEN_SECRET": "s" * 32}
    stack = start_stack(env=env)
    keyed = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as client:
        assert (await client.post("/batches", json={"jobs": [count()]})).status_code == 401
        created = await client.post("/batches", json={"jobs": [count()] * 3}, headers=keyed)
        assert created.status_code == 202, created.text
        token = created.headers["jobhub-token"]
        batch_id, child = created.json()["batch_id"], created.json()["job_ids"][0]
        other = await client.post("/batches", json={"jobs": [count()]}, headers=keyed)
        lone = await client.post("/jobs", json=count(), headers=keyed)
        client.cookies.clear()
        bearer = {"Authorization": f"Bearer {token}"}

        assert (await client.get(f"/batches/{batch_id}", headers=bearer)).status_code == 200
        assert (await client.get(f"/batches/{batch_id}/jobs", headers=bearer)).status_code == 200
        assert (await client.get(f"/jobs/{child}", headers=bearer)).status_code == 200
        async with client.stream("GET", f"/batches/{batch_id}/events", headers=bearer) as s:
            assert s.status_code == 200
            assert "event: job" in (await s.aread()).decode()  # ends with the batch
        elsewhere = [
            client.get(f"/batches/{other.json()['batch_id']}", headers=bearer),
            client.get(f"/jobs/{lone.json()['job_id']}", headers=bearer),
            client.get("/batches", headers=bearer),
            client.post("/batches", json={"jobs": [count()]}, headers=bearer),
            client.post(f"/batches/{batch_id}/retry", headers=bearer),
            client.delete(f"/batches/{batch_id}", headers=bearer),
        ]
        for response in await asyncio.gather(*elsewhere):
            assert response.status_code == 403, (response.request.url, response.text)
        # The cookie (set for the batch's path) opens its reads, not its changes.
        cookie = {"Cookie": f"jobhub_token={token}"}
        assert (await client.get(f"/batches/{batch_id}", headers=cookie)).status_code == 200
        assert (await client.post(f"/batches/{batch_id}/cancel", headers=cookie)).status_code in (
            401,
            403,
        )
        assert created.headers["set-cookie"].startswith("jobhub_token=")
        assert f"Path=/batches/{batch_id}" in created.headers["set-cookie"]


async def test_an_ended_batch_sends_one_signed_webhook(client: httpx.AsyncClient) -> None:
    calls: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        calls.append((await request.body(), request.headers.get(SIGNATURE_HEADER, "")))
        return Response(status_code=200)

    with ThreadedServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as web:
        body = {"jobs": [count(), count(3)], "callback_url": web.base_url + "/hook"}
        created = await client.post("/batches", json=body)
        assert created.status_code == 202, created.text
        async with asyncio.timeout(20):
            while not calls:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # no second one follows
    assert len(calls) == 1
    data, signature = calls[0]
    assert verify(data, signature, WEBHOOK_SECRET)
    sent = json.loads(data)
    assert (sent["batch_id"], sent["status"]) == (created.json()["batch_id"], "finished")
    assert sent["counts"]["finished"] == 2
