"""SIGKILL a real worker subprocess mid-job: no job may stay running."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx

from tests.support.servers import running_stack

TERMINAL = {"finished", "failed", "canceled"}


async def snapshots(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [(await client.get(f"/jobs/{job_id}")).json() for job_id in ids]


async def kill_a_worker_mid_jobs(max_tries: int) -> list[dict[str, Any]]:
    """20 jobs in flight over two workers; SIGKILL one; wait for every job to end."""
    env = {**os.environ, "JOBHUB_MAX_TRIES": str(max_tries), "JOBHUB_MAX_JOBS": "10"}
    with running_stack(env=env, workers=2) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            body = {"function": "demo.count", "kwargs": {"steps": 15, "delay": 0.2}}
            ids = [(await client.post("/jobs", json=body)).json()["job_id"] for _ in range(20)]
            async with asyncio.timeout(10):
                while any(s["status"] != "running" for s in await snapshots(client, ids)):
                    await asyncio.sleep(0.05)
            stack.processes[0].send_signal(signal.SIGKILL)  # one of the two workers
            async with asyncio.timeout(40):
                while not all(s["status"] in TERMINAL for s in await snapshots(client, ids)):
                    await asyncio.sleep(0.2)
            return await snapshots(client, ids)


async def test_jobs_of_a_killed_worker_are_run_again() -> None:
    finals = await kill_a_worker_mid_jobs(max_tries=5)
    assert all(s["status"] == "finished" for s in finals), [s["status"] for s in finals]
    rerun = [s for s in finals if s["attempt"] == 2]
    assert 0 < len(rerun) < 20  # the killed worker's share, run again on the other
    assert all(s["result"] == {"steps": 15} for s in finals)


async def test_jobs_past_their_tries_fail_with_worker_lost() -> None:
    finals = await kill_a_worker_mid_jobs(max_tries=1)
    lost = [s for s in finals if s["status"] == "failed"]
    assert 0 < len(lost) < 20
    for snapshot in lost:
        assert snapshot["error"]["type"] == "WorkerLost"
        assert "stopped" in snapshot["error"]["detail"]
    assert {s["status"] for s in finals} == {"finished", "failed"}
