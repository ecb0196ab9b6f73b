"""A worker stalled (SIGSTOP) past the lost window while it runs a batch's children, then
woken (SIGCONT) still running them: its late writes are fenced, so no child's count moves
twice, the batch's percent never goes back, and its stream ends with the true final state."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx

from tests.support.servers import running_stack
from tests.support.waiting import wait_until
from tests.system.test_batches import assert_exact, batch_snapshots, children, count, submit, watch

FAST = {"JOBHUB_WORKER_HEARTBEAT": "0.2", "JOBHUB_WORKER_LOST_AFTER": "1", "JOBHUB_MAX_JOBS": "8"}


async def test_a_stalled_workers_late_writes_move_no_count_twice() -> None:
    with running_stack(env={**os.environ, **FAST}, workers=2) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            created = await submit(client, [count(30, 0.05, weight=1 + i % 4) for i in range(16)])
            batch_id, ids = created["batch_id"], created["job_ids"]
            stream = asyncio.create_task(watch(client, batch_id))

            async def running() -> bool:
                batch = (await client.get(f"/batches/{batch_id}")).json()
                return bool(batch["counts"]["running"] >= 12)

            await wait_until(running, what="both workers to run children")
            holders = [(await client.get(f"/jobs/{j}/detail")).json()["worker"] for j in ids]
            pids = [h.split(":")[1] for h in holders if h]
            pid = max(set(pids), key=pids.count)
            stalled = next(p for p in stack.processes if str(p.pid) == pid)
            held = [j for j, h in zip(ids, holders, strict=True) if h and h.split(":")[1] == pid]

            async def moved_on() -> bool:
                found = [(await client.get(f"/jobs/{j}")).json() for j in held]
                return all(s["attempt"] > 1 or s["status"] == "finished" for s in found)

            stalled.send_signal(signal.SIGSTOP)  # past the lost window: its children move on
            try:
                await wait_until(moved_on, limit=20, what="the stalled worker's children")
            finally:
                stalled.send_signal(signal.SIGCONT)  # ... and it wakes, still running them
            async with asyncio.timeout(30):
                events = await stream
            final = (await client.get(f"/batches/{batch_id}")).json()
            snapshots = await children(client, batch_id)

    assert final["status"] == "finished" and final["percent"] == 100.0
    assert_exact(final, snapshots)
    assert any(s["attempt"] > 1 for s in snapshots), "the stalled worker held no child"
    seen = batch_snapshots(events)
    assert seen[-1] == final
    assert [b["seq"] for b in seen] == sorted({b["seq"] for b in seen})
    percents = [b["percent"] for b in seen]
    assert percents == sorted(percents)  # a child sent back to queued keeps its share
    for b in seen:
        assert sum(b["counts"].values()) == b["total"] == 16
