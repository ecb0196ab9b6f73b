"""Fenced runs and self-healing workers, against real `arq` CLI worker subprocesses:
a worker stalled past the lost window, dropped Redis connections, Redis losing its data."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import httpx
import redis.asyncio
from httpx_sse import aconnect_sse

from jobhub.dev.server import RedisServer
from tests.support.servers import running_stack
from tests.support.waiting import wait_until

TERMINAL = {"finished", "failed", "canceled"}
FAST = {"JOBHUB_WORKER_HEARTBEAT": "0.2", "JOBHUB_WORKER_LOST_AFTER": "1"}


async def watch(client: httpx.AsyncClient, job_id: str, into: list[dict[str, Any]]) -> None:
    async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
        async for event in source.aiter_sse():
            if event.event == "message":
                into.append(json.loads(event.data))


async def test_a_stalled_workers_late_writes_never_win() -> None:
    env = {**os.environ, **FAST, "JOBHUB_MAX_JOBS": "10"}
    with running_stack(env=env, workers=2) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            body = {"function": "demo.count", "kwargs": {"steps": 40, "delay": 0.05}}
            ids = [(await client.post("/jobs", json=body)).json()["job_id"] for _ in range(10)]
            seen: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in ids}
            watchers = [asyncio.create_task(watch(client, j, seen[j])) for j in ids]
            async with asyncio.timeout(10):
                while not all(any(s["status"] == "running" for s in seen[j]) for j in ids):
                    await asyncio.sleep(0.02)
            # Stall the worker that holds most of the jobs (a worker's id holds its pid).
            holders = [(await client.get(f"/jobs/{j}/detail")).json()["worker"] for j in ids]
            pid = max(set(holders), key=holders.count).split(":")[1]
            stalled = next(p for p in stack.processes if str(p.pid) == pid)
            held = [
                j for j, holder in zip(ids, holders, strict=True) if holder.split(":")[1] == pid
            ]

            def moved_on() -> bool:
                return all(any(s["attempt"] > 1 for s in seen[j]) for j in held)

            stalled.send_signal(signal.SIGSTOP)  # past the lost window: its jobs move on
            try:
                await wait_until(moved_on, limit=30, what="the stalled worker's jobs to move on")
            finally:
                stalled.send_signal(signal.SIGCONT)  # ... and it wakes up, still running them
            async with asyncio.timeout(30):
                await asyncio.gather(*watchers)
            finals = [(await client.get(f"/jobs/{j}")).json() for j in ids]
    assert all(s["status"] == "finished" for s in finals), [s["status"] for s in finals]
    recovered = [s for s in finals if s["attempt"] > 1]
    assert recovered, "the stalled worker held none of the jobs"
    for job_id, final in zip(ids, finals, strict=True):
        stream = seen[job_id]
        assert stream[-1]["seq"] == final["seq"]
        # The newest attempt wrote the end, and no stream ever went back: once an attempt
        # began, nothing of an older one appeared, and within one, progress only grew.
        assert final["attempt"] == max(s["attempt"] for s in stream)
        progress = [(s["attempt"], s["percent"]) for s in stream if s["status"] == "running"]
        assert progress == sorted(progress), (job_id, progress)


async def test_a_stalled_worker_waking_leaves_the_newer_attempt_queued() -> None:
    # One job per worker: the other worker is busy, so the stalled job's newer attempt
    # still waits in the queue when the stalled worker wakes and finds its run superseded.
    env = {**os.environ, **FAST, "JOBHUB_MAX_JOBS": "1"}
    with running_stack(env=env, workers=2) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:

            async def start(steps: int, delay: float) -> str:
                body = {"function": "demo.count", "kwargs": {"steps": steps, "delay": delay}}
                job_id: str = (await client.post("/jobs", json=body)).json()["job_id"]
                async with asyncio.timeout(10):
                    while (await client.get(f"/jobs/{job_id}")).json()["status"] != "running":
                        await asyncio.sleep(0.02)
                return job_id

            busy = await start(50, 0.1)
            stalling = await start(40, 0.05)
            holder = (await client.get(f"/jobs/{stalling}/detail")).json()["worker"]
            stalled = next(p for p in stack.processes if str(p.pid) == holder.split(":")[1])
            stalled.send_signal(signal.SIGSTOP)
            try:
                async with asyncio.timeout(10):
                    while (await client.get(f"/jobs/{stalling}")).json()["attempt"] < 2:
                        await asyncio.sleep(0.05)
                assert (await client.get(f"/jobs/{stalling}")).json()["status"] == "queued"
            finally:
                stalled.send_signal(signal.SIGCONT)
            async with asyncio.timeout(30):
                finals = {}
                while len(finals) < 2:
                    for job_id in (busy, stalling):
                        snapshot = (await client.get(f"/jobs/{job_id}")).json()
                        if snapshot["status"] in TERMINAL:
                            finals[job_id] = snapshot
                    await asyncio.sleep(0.1)
    assert finals[busy]["status"] == "finished"
    # Run again, not failed with the stale run's "superseded".
    assert finals[stalling]["status"] == "finished", finals[stalling]
    assert finals[stalling]["attempt"] >= 2


async def test_workers_survive_their_redis_connections_being_killed() -> None:
    env = {**os.environ, **FAST}
    with RedisServer() as server, running_stack(server.url, env=env, workers=2) as stack:
        admin = redis.asyncio.Redis.from_url(server.url)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            for _ in range(3):
                killed = await admin.client_kill_filter(_type="normal", skipme=True)
                assert killed > 0
                # Paces the kills, so each finds the connections the last one made them
                # open again; no process may have exited meanwhile.
                await asyncio.sleep(0.3)
            assert stack.exited() is None, stack.exited()
            body = {"function": "demo.count", "kwargs": {"steps": 2, "delay": 0.01}}
            async with asyncio.timeout(10):
                while (response := await client.post("/jobs", json=body)).status_code != 202:
                    await asyncio.sleep(0.1)  # the web app's own connection may need a retry
                job_id = response.json()["job_id"]
                while (await client.get(f"/jobs/{job_id}")).json()["status"] not in TERMINAL:
                    await asyncio.sleep(0.05)
            assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "finished"
        await admin.aclose()


async def test_the_stack_heals_after_redis_restarts_empty() -> None:
    env = {**os.environ, **FAST}
    with RedisServer() as server, running_stack(server.url, env=env) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            body = {"function": "demo.count", "kwargs": {"steps": 1, "delay": 0}}
            assert (await client.post("/jobs", json=body)).status_code == 202
            server.kill()
            server.start()  # on the same port, with nothing in it
            async with asyncio.timeout(15):
                while (response := await client.post("/jobs", json=body)).status_code != 202:
                    await asyncio.sleep(0.2)
                job_id = response.json()["job_id"]
                while (await client.get(f"/jobs/{job_id}")).json()["status"] not in TERMINAL:
                    await asyncio.sleep(0.05)
            assert stack.exited() is None, stack.exited()
            assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "finished"
