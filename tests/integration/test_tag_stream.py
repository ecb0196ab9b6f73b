"""A tag's stream across a Redis restart: what was published while the hub's pub/sub
connection was down is read from the tag's change log, and nothing goes backwards."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio
from httpx_sse import aconnect_sse

from jobhub import Settings, create_app
from jobhub.core.snapshot import Snapshot, Status
from jobhub.dev.server import RedisServer
from jobhub.store.store import Store
from tests.support.servers import ThreadedServer


async def retrying(call: Any) -> None:
    for _ in range(100):
        try:
            await call()
            return
        except redis.exceptions.ConnectionError:
            await asyncio.sleep(0.05)
    pytest.fail("Redis did not come back")


async def test_a_tag_stream_gets_what_changed_while_redis_was_down() -> None:
    tag = f"user:{uuid.uuid4().hex[:8]}"
    events: list[tuple[int, dict[str, Any]]] = []
    with RedisServer(persist=True) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        store = Store(client, result_ttl_seconds=3600)
        app = create_app(Settings(redis_url=server.url, redis_timeout_seconds=10))
        try:
            with ThreadedServer(app) as web:
                async with httpx.AsyncClient(base_url=web.base_url, timeout=30) as http:
                    first = "t-" + secrets.token_hex(6)
                    await store.create(Snapshot.queued(first, "demo.count", tags=[tag]))

                    async def collect() -> None:
                        path = f"/events?tag={tag}"
                        async with aconnect_sse(http, "GET", path) as source:
                            async for sse in source.aiter_sse():
                                events.append((int(sse.id), json.loads(sse.data)))

                    task = asyncio.create_task(collect())
                    async with asyncio.timeout(10):
                        while not events:
                            await asyncio.sleep(0.01)
                    server.kill()
                    server.start()
                    # Written before the hub has subscribed again (most likely): pub/sub
                    # drops them, and only the re-read of the change log delivers them.
                    second = "t-" + secrets.token_hex(6)
                    running = {"status": Status.RUNNING, "percent": 50.0}
                    await retrying(lambda: store.write(first, running))
                    await retrying(
                        lambda: store.create(Snapshot.queued(second, "demo.count", tags=[tag]))
                    )
                    async with asyncio.timeout(15):
                        while not {e[1]["job_id"] for e in events} >= {first, second} or not any(
                            e[1]["job_id"] == first and e[1]["seq"] == 2 for e in events
                        ):
                            await asyncio.sleep(0.02)
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        finally:
            await client.aclose()
    seqs = [snapshot["seq"] for _, snapshot in events if snapshot["job_id"] == first]
    assert seqs == [1, 2]  # never repeated, never backwards
