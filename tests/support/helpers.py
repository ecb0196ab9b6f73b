"""Small helpers the tests share: start a job, follow its stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from httpx_sse import aconnect_sse

TERMINAL = {"finished", "failed", "canceled"}


async def start(client: httpx.AsyncClient, function: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.post("/jobs", json={"function": function, "kwargs": kwargs})
    assert response.status_code == 202, response.text
    snap: dict[str, Any] = response.json()
    return snap


async def follow(
    client: httpx.AsyncClient, job_id: str, last_event_id: int | None = None, limit: float = 20
) -> list[tuple[str, dict[str, Any]]]:
    """Every (event id, snapshot) the job's stream sends, until the server ends it."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events = []
    async with asyncio.timeout(limit):
        async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events", headers=headers) as src:
            assert src.response.status_code == 200
            async for sse in src.aiter_sse():
                assert sse.event == "message"  # no event name: EventSource.onmessage gets it
                events.append((sse.id, json.loads(sse.data)))
    return events


async def wait_for(client: httpx.AsyncClient, job_id: str, limit: float = 20) -> dict[str, Any]:
    """Poll until the job is terminal; returns the final snapshot."""
    async with asyncio.timeout(limit):
        while True:
            snap: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
            if snap["status"] in TERMINAL:
                return snap
            await asyncio.sleep(0.05)
