"""No job stuck: every way the queue can end a job without jobhub's wrapper, with real
redis-server, real `arq` CLI workers and a real uvicorn."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio
from arq.connections import ArqRedis

from jobhub.core.snapshot import Snapshot
from jobhub.dev.processes import spawn, stop, worker_argv
from jobhub.dev.server import Stack
from jobhub.store.store import Store
from tests.support.servers import ROOT

TERMINAL = {"finished", "failed", "canceled"}
# Quick heartbeats keep the tests short; the behaviour is the same at the defaults.
FAST = {"JOBHUB_WORKER_HEARTBEAT": "0.2", "JOBHUB_WORKER_LOST_AFTER": "1"}


@pytest.fixture
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """A private Redis, the repository's worker and the web app."""
    return start_stack(env=FAST)


async def snapshot(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_ended(
    client: httpx.AsyncClient, ids: list[str], limit: float
) -> list[dict[str, Any]]:
    async with asyncio.timeout(limit):
        while True:
            finals = [await snapshot(client, job_id) for job_id in ids]
            if all(s["status"] in TERMINAL for s in finals):
                return finals
            await asyncio.sleep(0.1)


async def test_jobs_taken_by_a_worker_lacking_their_function_all_finish(stack: Stack) -> None:
    env = {**os.environ, **FAST, "REDIS_URL": stack.redis_url}
    extra = spawn(worker_argv("tests.support.extra_worker.WorkerSettings"), env=env, cwd=str(ROOT))
    try:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            body = {"function": "extra.double", "kwargs": {"n": 0}}
            async with asyncio.timeout(20):
                while (await client.post("/jobs", json=body)).status_code != 202:
                    await asyncio.sleep(0.1)  # until the extra worker announced it
            ids = []
            for n in range(12):
                response = await client.post("/jobs", json={**body, "kwargs": {"n": n}})
                assert response.status_code == 202, response.text
                ids.append(response.json()["job_id"])
            finals = await until_ended(client, ids, 30)
    finally:
        stop([extra])
    assert [s["status"] for s in finals] == ["finished"] * 12, finals
    assert [s["result"] for s in finals] == [2 * n for n in range(12)]


async def test_a_function_no_live_worker_offers_is_refused_and_its_jobs_fail_by_name(
    stack: Stack,
) -> None:
    env = {**os.environ, **FAST, "REDIS_URL": stack.redis_url}
    extra = spawn(worker_argv("tests.support.extra_worker.WorkerSettings"), env=env, cwd=str(ROOT))
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        body = {"function": "extra.double", "kwargs": {"n": 1}}
        async with asyncio.timeout(20):
            while (await client.post("/jobs", json=body)).status_code != 202:
                await asyncio.sleep(0.1)
        stop([extra])  # the only worker with extra.double is gone
        async with asyncio.timeout(10):
            while (response := await client.post("/jobs", json=body)).status_code == 202:
                await asyncio.sleep(0.2)  # accepted until its last beat expires
        assert response.status_code == 422
        assert "extra.double" not in response.json()["error"]["known"]

        # One enqueued with ARQ directly all the same: it ends, naming the function.
        arq = ArqRedis.from_url(stack.redis_url)
        job_id = "direct-" + secrets.token_hex(6)
        await arq.enqueue_job("extra.double", 3, _job_id=job_id)
        await arq.aclose()
        async with asyncio.timeout(20):
            while (response := await client.get(f"/jobs/{job_id}")).status_code == 404:
                await asyncio.sleep(0.1)
        [final] = await until_ended(client, [job_id], 20)
    assert final["status"] == "failed"
    assert final["error"]["type"] == "FunctionNotFound"
    assert "extra.double" in final["error"]["detail"]


async def test_cancel_pause_and_resume_never_answer_5xx_for_jobs_the_queue_ended(
    stack: Stack,
) -> None:
    arq = ArqRedis.from_url(stack.redis_url)
    ids = ["gone-" + secrets.token_hex(6) for _ in range(4)]
    for job_id in ids:
        await arq.enqueue_job("nobody.offers.this", _job_id=job_id)
    await arq.aclose()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        codes: set[int] = set()
        async with asyncio.timeout(20):
            while True:
                for job_id in ids:
                    for action in ("pause", "resume", "cancel"):
                        codes.add((await client.post(f"/jobs/{job_id}/{action}")).status_code)
                finals = [await client.get(f"/jobs/{job_id}") for job_id in ids]
                if all(r.status_code == 200 and r.json()["status"] in TERMINAL for r in finals):
                    break
                await asyncio.sleep(0.1)
    assert all(code < 500 for code in codes), codes
    assert 409 in codes  # an ended job refuses them, with its snapshot


async def test_a_queued_snapshot_the_queue_never_got_is_ended(stack: Stack) -> None:
    # As if the web process died between storing the snapshot and enqueueing it (which
    # jobhub now does in one step): nothing but the snapshot exists.
    client_redis = redis.asyncio.Redis.from_url(stack.redis_url)
    job_id = "orphan-" + secrets.token_hex(6)
    await Store(client_redis, result_ttl_seconds=60).create(Snapshot.queued(job_id, "demo.count"))
    await client_redis.aclose()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        [final] = await until_ended(client, [job_id], 15)
    assert final["status"] == "failed"
    assert final["error"]["type"] == "Lost"


async def test_a_kwarg_named_like_enqueue_parameters_runs_or_fails_never_hangs(
    stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        ids = []
        for name in ("function", "self", "ctx"):
            body = {"function": "demo.count", "kwargs": {name: 1, "steps": 1, "delay": 0}}
            response = await client.post("/jobs", json=body)
            assert response.status_code in (202, 400), response.text
            if response.status_code == 202:
                ids.append(response.json()["job_id"])
        finals = await until_ended(client, ids, 15)
    for final in finals:
        assert final["status"] == "failed"
        assert final["error"]["type"] == "TypeError"  # demo.count takes no such argument
