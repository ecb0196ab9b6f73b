"""Two web processes and two workers on one Redis, and a web process stopped mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from httpx_sse import aconnect_sse

from jobhub.dev.server import Stack, tcp_connections
from tests.support.helpers import follow
from tests.support.servers import running_stack


@pytest.fixture(scope="module")
def two_stacks(redis_url: str) -> Iterator[tuple[Stack, Stack]]:
    # One job at a time per worker: two jobs can only overlap if both workers take one.
    env = {**os.environ, "JOBHUB_MAX_JOBS": "1"}
    with (
        running_stack(redis_url, env=env) as a,
        running_stack(redis_url, env=env) as b,
    ):
        yield a, b


async def test_streams_on_either_web_see_jobs_on_either_worker(
    two_stacks: tuple[Stack, Stack],
) -> None:
    a, b = two_stacks
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=10) as web_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as web_b,
    ):
        body = {"function": "demo.count", "kwargs": {"steps": 5, "delay": 0.2}}
        one = (await web_a.post("/jobs", json=body)).json()["job_id"]
        two = (await web_b.post("/jobs", json=body)).json()["job_id"]
        # Each stream on the web process that did not enqueue the job.
        streams = await asyncio.gather(follow(web_b, one), follow(web_a, two))
        for events in streams:
            assert events[-1][1]["status"] == "finished"
            assert [s["percent"] for _, s in events if s["status"] == "running"][:4] == [
                20,
                40,
                60,
                80,
            ]
    # Both ran at once: each reported progress before the other finished. With one job
    # at a time per worker, that takes both workers.
    first_report = [next(s for _, s in events if s["status"] == "running") for events in streams]
    final = [events[-1][1] for events in streams]
    assert first_report[0]["updated_at"] < final[1]["updated_at"]
    assert first_report[1]["updated_at"] < final[0]["updated_at"]


async def test_redis_connections_of_a_web_process_stay_bounded(
    two_stacks: tuple[Stack, Stack],
) -> None:
    a, _ = two_stacks
    web_pid = a.processes[-1].pid
    redis_port = urlsplit(a.redis_url).port or 6379
    async with httpx.AsyncClient(base_url=a.base_url, timeout=20) as client:
        ids = [
            (
                await client.post(
                    "/jobs", json={"function": "demo.count", "kwargs": {"steps": 2, "delay": 0.5}}
                )
            ).json()["job_id"]
            for _ in range(40)
        ]
        # A burst of stream opens at once, each needing a subscription and a read.
        opened = 0

        async def open_stream(job_id: str) -> None:
            nonlocal opened
            async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
                async for _ in source.aiter_sse():
                    opened += 1
                    await asyncio.sleep(0.3)  # held open, so that the 100 are open together
                    return

        tasks = [asyncio.create_task(open_stream(j)) for j in ids * 5]
        while opened < 100:
            await asyncio.sleep(0.01)
        assert tcp_connections(web_pid, redis_port) <= 3
        await asyncio.gather(*tasks)


async def test_sigterm_ends_open_streams_fast_and_clients_resume_elsewhere(redis_url: str) -> None:
    with (
        running_stack(redis_url, workers=0) as spare,
        running_stack(redis_url) as main,
    ):
        async with httpx.AsyncClient(base_url=main.base_url, timeout=10) as client:
            body = {"function": "demo.count", "kwargs": {"steps": 8, "delay": 0.25}}
            job_id = (await client.post("/jobs", json=body)).json()["job_id"]
            seen: list[int] = []

            async def watch() -> None:
                async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
                    async for sse in source.aiter_sse():
                        seen.append(json.loads(sse.data)["seq"])

            streams = [asyncio.create_task(watch()) for _ in range(20)]
            while len(seen) < 40:
                await asyncio.sleep(0.01)
            web = main.processes[-1]
            stopped_at = time.monotonic()
            web.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*streams, return_exceptions=True)
            await asyncio.to_thread(web.wait, 10)
            assert time.monotonic() - stopped_at < 5
            # Every stream was ended by the server (cleanly or cut), none left hanging.
            assert all(r is None or isinstance(r, httpx.HTTPError) for r in results)
        # A client resumes on the other web process from the last seq it had.
        last = max(seen)
        async with httpx.AsyncClient(base_url=spare.base_url, timeout=10) as other:
            rest = await follow(other, job_id, last_event_id=last)
        assert all(s["seq"] > last for _, s in rest)
        assert rest[-1][1]["status"] == "finished"
