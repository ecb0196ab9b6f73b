"""A job's live output, stored: log lines and chunks in a capped per-job stream, in the
order the job wrote them, fenced like every write of a run; with a real ARQ worker."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
from arq.worker import create_worker

from jobhub import JobContext, Settings, ThreadJobContext, job, worker_settings
from jobhub.core import keys
from jobhub.core.snapshot import Status
from jobhub.dev import demo
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.store.store import Store
from tests.support.servers import stop_worker


@job("t.chatty")
async def chatty(ctx: JobContext, n: int) -> int:
    for i in range(n):
        await ctx.output({"row": i})
    return n


@job("t.breaks")
async def breaks(ctx: JobContext) -> None:
    await ctx.log("about to divide")
    _ = 1 / 0


@job("t.blocking_output")
def blocking_output(ctx: ThreadJobContext, n: int) -> int:
    for i in range(n):
        ctx.output(f"line {i}")
    ctx.log("done", level="warning")
    return n


FUNCTIONS = [*demo.FUNCTIONS, chatty, breaks, blocking_output]


@pytest.fixture
async def lifecycle(redis_url: str) -> AsyncIterator[Lifecycle]:
    settings = Settings(
        redis_url=redis_url,
        queue_name="out:" + secrets.token_hex(4),
        output_limit=50,
        result_ttl_seconds=60,
    )
    worker = create_worker(
        worker_settings(FUNCTIONS, settings), handle_signals=False, poll_delay=0.01
    )
    running = asyncio.create_task(worker.main())
    client = redis.asyncio.Redis.from_url(redis_url)
    store = Store(client, result_ttl_seconds=60, output_limit=50)
    yield Lifecycle(client, store, queue_name=settings.queue_name)
    await stop_worker(worker, running)
    await client.aclose()


async def run(lifecycle: Lifecycle, function: str, **kwargs: Any) -> str:
    job_id, _, _ = await lifecycle.create(function, [], kwargs)
    async with asyncio.timeout(20):
        while True:
            snapshot = await lifecycle.store.read(job_id)
            if snapshot is not None and snapshot.is_terminal:
                return job_id
            await asyncio.sleep(0.02)


async def entries(store: Store, job_id: str) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in await store.output(job_id, limit=10_000)]


async def test_chunks_and_log_lines_are_kept_in_the_order_written(lifecycle: Lifecycle) -> None:
    job_id = await run(lifecycle, "demo.tokens", count=25, delay=0)
    got = await entries(lifecycle.store, job_id)
    kinds = "".join("L" if e["kind"] == "log" else "o" for e in got)
    assert kinds == "o" * 10 + "L" + "o" * 10 + "L" + "o" * 5
    assert [e["data"] for e in got if e["kind"] == "output"] == [f"w{i} " for i in range(25)]
    assert got[10]["message"] == "10 words so far" and got[10]["level"] == "info"
    final = await lifecycle.store.read(job_id)
    assert final is not None and final.result == "".join(f"w{i} " for i in range(25))


async def test_output_is_capped_to_the_newest_and_expires_with_the_job(
    lifecycle: Lifecycle, redis_client: redis.asyncio.Redis
) -> None:
    job_id = await run(lifecycle, "t.chatty", n=200)
    got = await entries(lifecycle.store, job_id)
    assert [e["data"]["row"] for e in got] == list(range(150, 200))  # the cap is 50
    ttl = await redis_client.ttl(keys.job_output(job_id))
    assert 0 < ttl <= 60


async def test_a_failed_jobs_traceback_is_logged_not_put_in_its_snapshot(
    lifecycle: Lifecycle,
) -> None:
    job_id = await run(lifecycle, "t.breaks")
    got = await entries(lifecycle.store, job_id)
    assert [e["level"] for e in got] == ["info", "error"]
    assert "Traceback" in got[1]["message"] and "ZeroDivisionError" in got[1]["message"]
    final = await lifecycle.store.read(job_id)
    assert final is not None and final.status is Status.FAILED
    assert final.error is not None and final.error.type == "ZeroDivisionError"
    assert "Traceback" not in final.error.detail


async def test_a_blocking_job_writes_output_from_its_thread(lifecycle: Lifecycle) -> None:
    job_id = await run(lifecycle, "t.blocking_output", n=30)
    got = await entries(lifecycle.store, job_id)
    assert [e.get("data") for e in got[:-1]] == [f"line {i}" for i in range(30)]
    assert got[-1]["kind"] == "log" and got[-1]["level"] == "warning"


async def test_output_of_a_superseded_run_is_refused(lifecycle: Lifecycle) -> None:
    store = lifecycle.store
    job_id, _, _ = await lifecycle.create("nobody.runs.this", [], {})
    await store.write(job_id, {"status": Status.STARTED}, hidden={"run": "newest"})
    stale = store.prepare_entry(job_id, {"kind": "output", "data": 1}, run="older", owner=None)
    fresh = store.prepare_entry(job_id, {"kind": "output", "data": 2}, run="newest", owner=None)
    results = await store.write_many([stale])
    results += await store.write_many([fresh])
    assert type(results[0]).__name__ == "RunSuperseded"
    assert [e["data"] for e in await entries(store, job_id)] == [2]
