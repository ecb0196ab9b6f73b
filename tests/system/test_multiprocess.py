"""Several web processes behind one port (uvicorn --workers), each with its own pub/sub
connection: streams on every process get every job's final state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import redis.asyncio
from httpx_sse import aconnect_sse

from jobhub.core import keys
from jobhub.dev.server import RedisServer
from tests.support.servers import running_stack


async def final_of(base_url: str, job_id: str) -> dict[str, Any]:
    last: dict[str, Any] = {}
    # A client of its own per stream: a new connection, which the kernel hands to either
    # process.
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source,
    ):
        async for sse in source.aiter_sse():
            if sse.event == "message" and sse.data:
                last = json.loads(sse.data)
    return last


async def test_streams_on_two_web_processes_all_get_the_final_state() -> None:
    # As `jobhub dev --web-processes 2` runs them (uvicorn --workers 2).
    with RedisServer() as server, running_stack(server.url, web_processes=2) as stack:
        admin = redis.asyncio.Redis.from_url(server.url)
        try:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
                # Long enough (about 6 s) that the streams below all open while it runs.
                body = {"function": "demo.count", "kwargs": {"steps": 60, "delay": 0.1}}
                response = await client.post("/jobs", json=body)
                assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            channel = keys.job_channel(job_id)
            streams: list[asyncio.Task[dict[str, Any]]] = []
            async with asyncio.timeout(8):
                # Each process subscribes the job's channel once, however many of its
                # streams watch it: two subscribers, so both processes serve streams. The
                # kernel may hand a burst of connections to one process, so open them a few
                # at a time until the other has taken some too.
                while dict(await admin.pubsub_numsub(channel)).get(channel.encode()) != 2:
                    streams += [
                        asyncio.create_task(final_of(stack.base_url, job_id)) for _ in range(4)
                    ]
                    await asyncio.sleep(0.1)
            async with asyncio.timeout(30):
                finals = await asyncio.gather(*streams)
        finally:
            await admin.aclose()
    assert all(f["status"] == "finished" and f["result"] == {"steps": 60} for f in finals)
