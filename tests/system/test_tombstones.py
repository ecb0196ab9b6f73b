"""Deleted stays deleted: what ARQ writes for a job after its delete (the result of a run
whose ``finally`` was still running) never brings it back, and the id can be used again
(real `arq` CLI workers and reconciler, real web app)."""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import redis.asyncio
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import JobResult

from jobhub.core import keys
from jobhub.dev.server import RedisServer
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.store.store import Store
from tests.support.servers import running_stack

FAST = {"JOBHUB_WORKER_HEARTBEAT": "0.2", "JOBHUB_WORKER_LOST_AFTER": "1"}
SETTINGS = "tests.support.extra_worker.WorkerSettings"


async def until(condition: Any, limit: float = 15) -> None:
    async with asyncio.timeout(limit):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_a_deleted_job_stays_deleted_after_its_run_ends() -> None:
    env = {**os.environ, **FAST}
    with (
        RedisServer() as server,
        running_stack(server.url, env=env, worker_settings=SETTINGS) as stack,
    ):
        r = redis.asyncio.Redis.from_url(server.url)
        async with r, httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            body = {"function": "extra.slow_finally", "kwargs": {"seconds": 1.0}}
            job_id = (await client.post("/jobs", json=body)).json()["job_id"]

            async def running() -> bool:
                return bool((await client.get(f"/jobs/{job_id}")).json()["status"] == "running")

            await until(running)
            assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
            # Deleted while its `finally` still runs: ARQ writes its result a second later.
            assert (await client.delete(f"/jobs/{job_id}")).status_code == 204
            assert await r.exists(in_progress_key_prefix + job_id)

            async def arq_ended() -> bool:
                return bool(await r.exists(f"tests:arq-ended:{job_id}"))

            await until(arq_ended)
            # The reconciler walks every heartbeat (0.2 s here): ten of its passes later, the
            # job is still gone, and so is the result ARQ wrote after the delete.
            loop = asyncio.get_running_loop()
            end = loop.time() + 2.0
            while loop.time() < end:
                assert (await client.get(f"/jobs/{job_id}")).status_code == 404
                await asyncio.sleep(0.1)
            assert not await r.exists(result_key_prefix + job_id)
            assert job_id not in (await client.get("/jobs")).text

            # A new job under the same id is a job of its own.
            again = {"function": "extra.double", "args": [21], "job_id": job_id}
            created = await client.post("/jobs", json=again)
            assert created.status_code == 202, created.text

            async def finished() -> bool:
                return bool((await client.get(f"/jobs/{job_id}")).json()["status"] == "finished")

            await until(finished)
            final = (await client.get(f"/jobs/{job_id}")).json()
    assert final["result"] == 42 and final["function"] == "extra.double"


async def test_a_new_job_under_a_deleted_id_replaces_its_late_result(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    lifecycle = Lifecycle(redis_client, store, queue_name=f"arq:test:{secrets.token_hex(4)}")
    job_id, _, _ = await lifecycle.create("demo.count", [], {"steps": 1})
    await lifecycle.cancel(job_id)
    await lifecycle.delete(job_id)
    assert await redis_client.ttl(keys.job_deleted(job_id)) > 0
    # ARQ ends the deleted job's run once its `finally` is done, as its finish_job does:
    # the job's record and queue entry go, its result is written.
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.delete(job_key_prefix + job_id)
        pipe.zrem(lifecycle.queue_name, job_id)
        pipe.set(result_key_prefix + job_id, b"late", px=60_000)
        await pipe.execute()
    # Adopting what only the queue knows is refused while the tombstone lives ...
    assert not await lifecycle.adopt(job_id, _result("demo.count"))
    assert await store.get(job_id) is None
    # ... and a new job under the id is created: the late result was the deleted job's.
    _, created, _ = await lifecycle.create("demo.count", [], {"steps": 1}, job_id=job_id)
    assert created
    assert not await redis_client.exists(keys.job_deleted(job_id), result_key_prefix + job_id)


def _result(function: str) -> JobResult:
    now = datetime.now(UTC)
    return JobResult(
        function=function, args=(), kwargs={}, job_try=1, enqueue_time=now, score=None,
        success=False, result=asyncio.CancelledError(), start_time=now, finish_time=now,
        queue_name="arq:queue", job_id=None,
    )  # fmt: skip
