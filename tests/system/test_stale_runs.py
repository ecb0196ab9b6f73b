"""A stale run touches nothing of the newer run's, and a write is applied once: a worker
stalled past the lost window (SIGSTOP, real `arq` CLI workers) wakes while its job runs again
elsewhere; the newer run's ``Retry`` still works, and ARQ's records stay the newer run's."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from typing import Any

import httpx
import pytest
import redis.asyncio
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.worker import RetryJob
from httpx_sse import aconnect_sse

from jobhub.core.exceptions import RunSuperseded
from jobhub.core.snapshot import Snapshot, Status
from jobhub.dev.server import RedisServer
from jobhub.lifecycle.runs import PARK_MS, Run
from jobhub.store.store import Store
from jobhub.store.writes import WriteBatch
from tests.support.servers import running_stack

TERMINAL = {"finished", "failed", "canceled"}
FAST = {"JOBHUB_WORKER_HEARTBEAT": "0.2", "JOBHUB_WORKER_LOST_AFTER": "1"}


async def watch(client: httpx.AsyncClient, job_id: str, into: list[tuple[str, Any]]) -> None:
    async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
        async for event in source.aiter_sse():
            into.append((event.event, json.loads(event.data)))
            if event.event == "message" and into[-1][1]["status"] in TERMINAL:
                return


async def until(condition: Any, limit: float = 15) -> None:
    async with asyncio.timeout(limit):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_a_stale_run_leaves_the_newer_runs_retry_working() -> None:
    env = {**os.environ, **FAST, "JOBHUB_MAX_JOBS": "2"}
    settings = "tests.support.extra_worker.WorkerSettings"
    with (
        RedisServer() as server,
        running_stack(server.url, env=env, workers=2, worker_settings=settings) as stack,
    ):
        r = redis.asyncio.Redis.from_url(server.url)
        async with r, httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            key = f"tests:{secrets.token_hex(4)}"
            body = {"function": "extra.retry_after_stall", "kwargs": {"key": key}}
            job_id = (await client.post("/jobs", json=body)).json()["job_id"]
            seen: list[tuple[str, Any]] = []
            watcher = asyncio.create_task(watch(client, job_id, seen))

            async def snapshot() -> dict[str, Any]:
                return (await client.get(f"/jobs/{job_id}")).json()  # type: ignore[no-any-return]

            async def running(attempt: int) -> bool:
                now = await snapshot()
                return bool(now["status"] == "running" and now["attempt"] == attempt)

            await until(lambda: running(1))
            holder = (await client.get(f"/jobs/{job_id}/detail")).json()["worker"]
            stalled = next(p for p in stack.processes if str(p.pid) == holder.split(":")[1])
            stalled.send_signal(signal.SIGSTOP)  # past the lost window: try 2 runs elsewhere
            try:
                await until(lambda: running(2))
            finally:
                stalled.send_signal(signal.SIGCONT)  # ... and it wakes, still running try 1

            async def arq_ended(count: int) -> bool:
                return int(await r.get(f"tests:arq-ended:{job_id}") or 0) >= count

            await until(lambda: arq_ended(1))  # ARQ is done with the stale run of try 1
            # What ARQ holds of the job is still the newer run's.
            assert await r.exists(job_key_prefix + job_id)
            assert await r.exists(in_progress_key_prefix + job_id)
            assert await r.zscore("arq:queue", job_id) is not None
            assert not await r.exists(result_key_prefix + job_id)

            await r.set(f"{key}:go", 1)  # try 2 raises Retry
            async with asyncio.timeout(20):
                await watcher
            final = await snapshot()
            await until(lambda: arq_ended(3))
            runs = [int(await r.get(f"{key}:runs:{n}") or 0) for n in (1, 2, 3, 4)]
            arq_results = await r.exists(result_key_prefix + job_id)
            ended = int(await r.get(f"tests:arq-ended:{job_id}") or 0)

    assert final["status"] == "finished", final
    assert final["attempt"] == 3 and final["result"] == {"attempt": 3}
    assert runs == [1, 1, 1, 0], runs  # each try ran once, and none more
    assert ended == 3
    # ARQ keeps no result of any run, the stale one's included: the snapshot holds the
    # newest run's (above).
    assert arq_results == 0
    # Watchers see the attempt change, on the snapshots and on each output entry.
    snapshots = [data for event, data in seen if event == "message"]
    attempts = [s["attempt"] for s in snapshots]
    assert attempts == sorted(attempts) and set(attempts) == {1, 2, 3}, attempts
    outputs = [data for event, data in seen if event == "output"]
    assert [(o["data"], o["attempt"]) for o in outputs] == [
        (f"try {n} began", n) for n in (1, 2, 3)
    ], outputs


async def test_a_write_sent_twice_is_applied_once(store: Store) -> None:
    # As a connection retried across a failover sends it again, its first reply lost.
    job_id = f"once-{secrets.token_hex(4)}"
    await store.create(Snapshot.queued(job_id, "demo.count"))
    start = {"status": Status.STARTED, "percent": 0.0, "message": "started", "attempt": 1}
    started = await store.write(job_id, start, hidden={"run": "r1"}, once=("r1", 1))
    report = {"status": Status.RUNNING, "percent": 40.0, "message": "step 2/5"}
    first = await store.write(job_id, report, run="r1", once=("r1", 2))
    again = await store.write(job_id, report, run="r1", once=("r1", 2))
    assert json.loads(first)["seq"] == json.loads(started)["seq"] + 1
    assert again == first  # the snapshot as applied: no new seq
    seq = json.loads(first)["seq"]
    assert [json.loads(h)["seq"] for h in await store.history(job_id)] == [seq - 2, seq - 1, seq]

    entry = store.prepare_entry(job_id, {"kind": "log", "message": "hi"}, run="r1", owner=None,
                                once=("r1", 3))  # fmt: skip
    [entry_id] = await store.write_many([entry])
    [entry_again] = await store.write_many([entry])
    assert isinstance(entry_id, bytes) and entry_again == entry_id
    assert [e for e, _ in await store.output(job_id)] == [entry_id.decode()]

    # A start sent again does not take the job back to `started`; a newer number applies.
    await store.write(job_id, start, hidden={"run": "r1"}, once=("r1", 1))
    assert json.loads(await store.get(job_id) or b"{}")["status"] == "running"
    later = await store.write(job_id, {"percent": 60.0}, run="r1", once=("r1", 4))
    assert json.loads(later)["seq"] == seq + 1
    # Another run's write with the same number is its own write, not a repeat (fenced here).
    with pytest.raises(RunSuperseded):
        await store.write(job_id, {"percent": 70.0}, run="r2", once=("r2", 4))


async def test_a_stale_runs_repair_restores_only_what_the_newer_run_still_holds(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    queue = f"arq:test:{secrets.token_hex(4)}"
    job_id = f"stale-{secrets.token_hex(4)}"
    held, record = in_progress_key_prefix + job_id, job_key_prefix + job_id
    await store.create(Snapshot.queued(job_id, "demo.count"))
    batch = WriteBatch(store)
    stale = Run(batch, job_id, attempt=1, worker_id="a", queue_name=queue)
    await stale.start("demo.count")
    newer = Run(batch, job_id, attempt=2, worker_id="b", queue_name=queue)
    await newer.start("demo.count")
    # What ARQ holds while the newer run is under way.
    await redis_client.set(record, b"payload")
    await redis_client.set(held, b"1")
    await redis_client.zadd(queue, {job_id: 1000})

    assert isinstance(await stale.superseded(), RetryJob)
    assert await redis_client.zscore(queue, job_id) == 1000 + PARK_MS  # out of every poll's reach
    await redis_client.zincrby(queue, 500, job_id)  # the newer run's own move meanwhile
    await redis_client.delete(held)  # ARQ ending the stale run
    assert await stale.keep_newer(60_000)
    assert await redis_client.exists(held)
    assert await redis_client.zscore(queue, job_id) == 1500  # the newer run's move kept

    # Once the newer run has ended, nothing is put back: the mark would hold the id forever.
    await redis_client.delete(held)
    await newer.finish(None)
    assert isinstance(await stale.superseded(), RetryJob)
    assert await redis_client.zscore(queue, job_id) == 1500
    assert not await stale.keep_newer(60_000)
    assert not await redis_client.exists(held)
