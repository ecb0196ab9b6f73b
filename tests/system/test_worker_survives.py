"""Workers run as plain `arq` CLI subprocesses, with nothing to restart them: killed Redis
connections, Redis restarts and a Redis refusing connections, while jobs are enqueued and
run, end none of them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio
from arq.constants import in_progress_key_prefix
from redis.exceptions import WatchError

from jobhub.core.settings import Settings
from jobhub.dev.server import RedisServer
from jobhub.lifecycle.arq import IN_PROGRESS_MS, WorkerRedis, arq_pool
from tests.support.servers import running_stack

TERMINAL = {"finished", "failed", "canceled"}
FAST = {"JOBHUB_WORKER_HEARTBEAT": "0.2", "JOBHUB_WORKER_LOST_AFTER": "1"}
WORKERS = 2


def exits(workers: list[subprocess.Popen[bytes]]) -> list[str]:
    return [f"worker {p.pid} exited with {p.returncode}" for p in workers if p.poll() is not None]


async def enqueue(client: httpx.AsyncClient, ids: list[str]) -> None:
    """POST jobs for ever, a few at a time, keeping the ids of those the web app accepted
    (one refused, or answered 503 while Redis is away, is simply not kept)."""
    body = {"function": "demo.count", "kwargs": {"steps": 3, "delay": 0.02}}

    async def one() -> None:
        try:
            response = await client.post("/jobs", json=body)
        except httpx.TransportError:
            return
        if response.status_code == 202:
            ids.append(response.json()["job_id"])

    while True:
        await asyncio.gather(*(one() for _ in range(4)))
        await asyncio.sleep(0.02)


async def wait_until_ended(
    client: httpx.AsyncClient, ids: list[str], workers: list[subprocess.Popen[bytes]]
) -> tuple[dict[str, str], list[str]]:
    """Each job's last status, and the jobs that had not ended within 20 s (none if all
    did), checking all along that no worker exits."""
    statuses: dict[str, str] = {}
    pending = list(ids)
    deadline = time.monotonic() + 20
    while pending and time.monotonic() < deadline:
        assert not exits(workers), exits(workers)
        for job_id in pending:
            statuses[job_id] = (await client.get(f"/jobs/{job_id}")).json()["status"]
        pending = [j for j in pending if statuses[j] not in TERMINAL]
        if pending:
            await asyncio.sleep(0.1)
    return statuses, pending


async def test_no_worker_exits_on_killed_connections_and_redis_restarts() -> None:
    env = {**os.environ, **FAST}
    # Persistent, so that a restart keeps the jobs and each of them can still end.
    with (
        RedisServer(persist=True) as server,
        running_stack(server.url, env=env, workers=WORKERS) as stack,
    ):
        workers = stack.processes[:WORKERS]  # a Stack starts its workers first
        admin = redis.asyncio.Redis.from_url(server.url)
        ids: list[str] = []
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            enqueuing = asyncio.create_task(enqueue(client, ids))
            try:
                # 10 kills of every client connection and 5 restarts, interleaved; before
                # each, jobs flow again (the web app accepts a job only while a live
                # worker offers its function).
                for i in range(15):
                    async with asyncio.timeout(15):
                        seen = len(ids)
                        while len(ids) < seen + 8:
                            assert not exits(workers), exits(workers)
                            await asyncio.sleep(0.02)
                    if i % 3 == 2:
                        server.kill()
                        server.start()
                    else:
                        await admin.client_kill_filter(_type="normal", skipme=True)
                    assert not exits(workers), exits(workers)
            finally:
                enqueuing.cancel()
                await asyncio.gather(enqueuing, return_exceptions=True)
            statuses, pending = await wait_until_ended(client, ids, workers)
            details = [(await client.get(f"/jobs/{j}/detail")).json() for j in pending]
        await admin.aclose()
        assert not exits(workers), exits(workers)
    assert len(ids) >= 15 * 8
    # Every job ends, also one whose in-progress mark was set by an EXEC whose reply a kill
    # took: the reconciler takes such a mark back (jobhub/lifecycle/reconciler.py).
    assert pending == [], details
    assert {statuses[j] for j in ids} == {"finished"}


async def test_no_worker_exits_while_redis_refuses_new_connections() -> None:
    # Redis at its client limit accepts a connection and closes it with an error: the
    # worker's reconnect then fails in its handshake, a step redis-py does not retry.
    env = {**os.environ, **FAST}
    with (
        RedisServer() as server,
        running_stack(server.url, env=env, workers=WORKERS) as stack,
    ):
        workers = stack.processes[:WORKERS]
        admin = redis.asyncio.Redis.from_url(server.url, single_connection_client=True)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            await admin.config_set("maxclients", 1)  # this connection holds the one slot
            try:
                await admin.client_kill_filter(_type="normal", skipme=True)
                # Each worker tries again and again, refused: long enough for several tries.
                async with asyncio.timeout(10):
                    while (await admin.info("stats"))["rejected_connections"] < 10 * WORKERS:
                        assert not exits(workers), exits(workers)
                        await asyncio.sleep(0.05)
            finally:
                await admin.config_set("maxclients", 10000)
                await admin.aclose()
            body = {"function": "demo.count", "kwargs": {"steps": 2, "delay": 0.01}}
            async with asyncio.timeout(10):
                while (response := await client.post("/jobs", json=body)).status_code != 202:
                    assert not exits(workers), exits(workers)
                    await asyncio.sleep(0.1)
            job_id = response.json()["job_id"]
            statuses, pending = await wait_until_ended(client, [job_id], workers)
        assert not exits(workers), exits(workers)
    assert statuses == {job_id: "finished"}, pending


@pytest.fixture
async def private_redis() -> AsyncIterator[tuple[WorkerRedis, redis.asyncio.Redis]]:
    """The workers' client and an admin one, on a Redis of their own (its connections
    are killed)."""
    with RedisServer() as server:
        worker = arq_pool(Settings(redis_url=server.url))
        admin = redis.asyncio.Redis.from_url(server.url)
        yield worker, admin
        await worker.aclose(close_connection_pool=True)
        await admin.aclose()


async def test_a_watch_lost_before_any_read_is_watched_again(
    private_redis: tuple[WorkerRedis, redis.asyncio.Redis],
) -> None:
    worker, admin = private_redis
    async with worker.pipeline(transaction=True) as pipe:
        await pipe.watch("k")
        await admin.client_kill_filter(_type="normal", skipme=True)
        assert not await pipe.exists("k")  # read after a new WATCH: nothing read before
        pipe.multi()
        pipe.set("k", "mine")
        assert await pipe.execute() == [True]
    assert await admin.get("k") == b"mine"


async def test_a_watch_lost_after_a_read_aborts_the_transaction(
    private_redis: tuple[WorkerRedis, redis.asyncio.Redis],
) -> None:
    worker, admin = private_redis
    async with worker.pipeline(transaction=True) as pipe:
        await pipe.watch("k")
        assert not await pipe.exists("k")
        await admin.client_kill_filter(_type="normal", skipme=True)
        await admin.set("k", "theirs")  # unseen by the lost WATCH, nor by the new one
        assert await pipe.get("k") == b"theirs"  # the read goes on, on a new connection
        pipe.multi()
        pipe.set("k", "mine")
        with pytest.raises(WatchError):  # as if "k" had changed: it may have
            await pipe.execute()
    assert await admin.get("k") == b"theirs"
    async with worker.pipeline(transaction=True) as pipe:  # a new transaction is whole
        await pipe.watch("k")
        pipe.multi()
        pipe.set("k", "mine")
        assert await pipe.execute() == [True]


async def test_a_mark_that_no_run_took_up_is_taken_back_and_the_job_runs() -> None:
    # What a kill between ARQ's EXEC and its reply leaves: the job marked in progress, and
    # the worker that marked it sure it was taken elsewhere. Made here on purpose: a job
    # deferred for a moment is marked before any worker may take it.
    env = {**os.environ, **FAST}
    with RedisServer() as server, running_stack(server.url, env=env) as stack:
        admin = redis.asyncio.Redis.from_url(server.url)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            body = {"function": "demo.count", "kwargs": {"steps": 1}, "defer_seconds": 0.5}
            response = await client.post("/jobs", json=body)
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            await admin.set(in_progress_key_prefix + job_id, b"1", px=IN_PROGRESS_MS)
            statuses, pending = await wait_until_ended(client, [job_id], [])
        await admin.aclose()
    assert pending == []
    assert statuses[job_id] == "finished"
