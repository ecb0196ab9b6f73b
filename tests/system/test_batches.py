"""Batches against real workers: exact counts through failures, cancels and a SIGKILLed
worker; a stream cut and resumed; an open batch; a cancel racing the children's ends; bad
input that creates nothing."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from jobhub.core.batch import MAX_BATCH_JOBS
from tests.support.servers import running_stack

STATUSES = ("queued", "started", "running", "paused", "finished", "failed", "canceled")
TERMINAL = {"finished", "failed", "canceled"}


def count(steps: int, delay: float, **extra: Any) -> dict[str, Any]:
    return {"function": "demo.count", "kwargs": {"steps": steps, "delay": delay}, **extra}


async def submit(client: httpx.AsyncClient, jobs: list[dict[str, Any]], **body: Any) -> Any:
    response = await client.post("/batches", json={"jobs": jobs, **body})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/batches/{response.json()['batch_id']}"
    return response.json()


async def children(client: httpx.AsyncClient, batch_id: str, **query: Any) -> list[Any]:
    """Every child's snapshot, page by page."""
    found, after = [], 0
    while after is not None:
        page = await client.get(f"/batches/{batch_id}/jobs", params={**query, "after": after})
        assert page.status_code == 200, page.text
        found += page.json()["jobs"]
        after = page.json()["next_after"]
    return found


async def watch(
    client: httpx.AsyncClient,
    batch_id: str,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    jobs: str = "true",
) -> list[tuple[str, str, Any]]:
    """(event id, event name, data) of the batch's stream until it ends (or ``stop_after``
    events: the client cuts it)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    events: list[tuple[str, str, Any]] = []
    path = f"/batches/{batch_id}/events?jobs={jobs}"
    async with aconnect_sse(client, "GET", path, headers=headers) as src:
        assert src.response.status_code == 200
        async for sse in src.aiter_sse():
            events.append((sse.id, sse.event, json.loads(sse.data)))
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def assert_exact(batch: dict[str, Any], snapshots: list[dict[str, Any]]) -> None:
    """The batch's counts are the children's statuses, one by one, and sum to total."""
    assert len(snapshots) == batch["total"]
    assert batch["counts"] == {s: Counter(c["status"] for c in snapshots)[s] for s in STATUSES}
    assert sum(batch["counts"].values()) == batch["total"]


def batch_snapshots(events: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    return [data for _, name, data in events if name == "message"]


async def test_counts_stay_exact_through_failures_cancels_and_a_killed_worker() -> None:
    env = {"JOBHUB_MAX_JOBS": "25", "JOBHUB_WORKER_LOST_AFTER": "2",
           "JOBHUB_WORKER_HEARTBEAT": "0.5"}  # fmt: skip
    with running_stack(env=env, workers=2) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            jobs = [count(4, 0.1, weight=1 + i % 3) for i in range(150)]
            jobs += [{"function": "demo.fail", "kwargs": {"after": 1, "delay": 0.1}}] * 25
            jobs += [count(40, 0.1, job_id=f"long-{i}") for i in range(25)]
            created = await submit(client, jobs)
            batch_id = created["batch_id"]
            assert created["batch"]["total"] == 200
            assert created["batch"]["counts"]["queued"] == 200
            stream = asyncio.create_task(watch(client, batch_id))

            async with asyncio.timeout(20):
                while (await client.get(f"/batches/{batch_id}")).json()["counts"]["running"] < 20:
                    await asyncio.sleep(0.05)
            stack.processes[0].send_signal(signal.SIGKILL)  # one of the two workers
            for i in range(0, 25, 2):  # some of the long ones, queued or mid-run
                assert (await client.post(f"/jobs/long-{i}/cancel")).status_code in (200, 409)
            async with asyncio.timeout(45):
                events = await stream
            final = (await client.get(f"/batches/{batch_id}")).json()
            snapshots = await children(client, batch_id)

    assert final["status"] == "failed"  # 25 children failed
    assert final["sealed"] is True and final["percent"] == 100.0
    assert_exact(final, snapshots)
    assert final["counts"]["failed"] >= 25 and final["counts"]["canceled"] >= 1
    assert {c["batch_id"] for c in snapshots} == {batch_id}
    seen = batch_snapshots(events)
    assert seen[-1] == final
    assert [b["seq"] for b in seen] == sorted({b["seq"] for b in seen})  # never backwards
    percents = [b["percent"] for b in seen]
    assert percents == sorted(percents)  # never down
    for b in seen:
        assert sum(b["counts"].values()) == b["total"] == 200


async def test_a_stream_cut_and_resumed_repeats_nothing_and_misses_no_end(
    client: httpx.AsyncClient,
) -> None:
    created = await submit(client, [count(5, 0.05) for _ in range(30)])
    batch_id = created["batch_id"]
    first = await watch(client, batch_id, stop_after=25)
    rest = await watch(client, batch_id, last_event_id=first[-1][0])
    events = first + rest
    ids = [int(event_id) for event_id, _, _ in events]
    assert ids == sorted(set(ids))  # each event once, in order
    jobs = [(data["job_id"], data["seq"]) for _, name, data in events if name == "job"]
    assert len(jobs) == len(set(jobs))
    ends = {data["job_id"]: data["status"] for _, name, data in events if name == "job"}
    assert set(ends) == set(created["job_ids"])
    assert set(ends.values()) == {"finished"}  # every child's final state arrived
    seen = batch_snapshots(events)
    assert [b["seq"] for b in seen] == sorted({b["seq"] for b in seen})
    assert seen[-1]["status"] == "finished"
    # Past the end there is nothing more to send: 204 stops EventSource reconnecting.
    again = await client.get(
        f"/batches/{batch_id}/events", headers={"Last-Event-ID": events[-1][0]}
    )
    assert again.status_code == 204


async def test_an_open_batch_takes_jobs_until_sealed(client: httpx.AsyncClient) -> None:
    created = await submit(client, [count(1, 0.01) for _ in range(3)], open=True)
    batch_id = created["batch_id"]
    assert created["batch"]["sealed"] is False
    async with asyncio.timeout(20):
        while (await client.get(f"/batches/{batch_id}")).json()["counts"]["finished"] < 3:
            await asyncio.sleep(0.05)
    batch = (await client.get(f"/batches/{batch_id}")).json()
    assert batch["status"] == "active"  # every child ended, but more may come
    added = await client.post(f"/batches/{batch_id}/jobs", json={"jobs": [count(3, 0.05)] * 2})
    assert added.status_code == 202, added.text
    assert added.json()["batch"]["total"] == 5
    sealed = await client.post(f"/batches/{batch_id}/seal")
    assert sealed.status_code == 200 and sealed.json()["sealed"] is True
    late = await client.post(f"/batches/{batch_id}/jobs", json={"jobs": [count(1, 0.01)]})
    assert late.status_code == 409 and late.json()["error"]["type"] == "BatchConflict"
    bar = asyncio.create_task(watch(client, batch_id, jobs="false"))
    events = await watch(client, batch_id)
    final = batch_snapshots(events)[-1]
    assert final["status"] == "finished" and final["total"] == 5
    bar_only = await bar  # the batch's snapshots alone, up to the same end
    assert {name for _, name, _ in bar_only} == {"message"} and bar_only[-1][2] == final
    assert_exact(final, await children(client, batch_id))


async def test_a_cancel_racing_the_children_ends_keeps_counts_exact(
    client: httpx.AsyncClient,
) -> None:
    created = await submit(client, [count(2 + i % 5, 0.03) for i in range(120)])
    batch_id = created["batch_id"]
    async with asyncio.timeout(20):
        while (await client.get(f"/batches/{batch_id}")).json()["counts"]["finished"] < 5:
            await asyncio.sleep(0.02)
    stream = asyncio.create_task(watch(client, batch_id))
    canceled = await client.post(f"/batches/{batch_id}/cancel")
    assert canceled.status_code == 200, canceled.text
    async with asyncio.timeout(20):
        events = await stream
    final = batch_snapshots(events)[-1]
    assert final["status"] == "canceled"
    snapshots = await children(client, batch_id)
    assert_exact(final, snapshots)
    assert final["counts"]["finished"] >= 5 and final["counts"]["canceled"] >= 1
    only = await children(client, batch_id, status="canceled", limit=7)
    assert len(only) == final["counts"]["canceled"]
    # An ended batch can be retried (its canceled children as new jobs) or deleted.
    busy = await client.post(f"/batches/{batch_id}/retry")
    assert busy.status_code == 202
    retried = busy.json()
    assert len(retried["job_ids"]) == final["counts"]["canceled"]
    assert retried["batch"]["status"] == "active" and retried["batch"]["total"] == 120
    refused = await client.delete(f"/batches/{batch_id}")
    assert refused.status_code == 409
    events = await watch(client, batch_id)
    again = batch_snapshots(events)[-1]
    assert again["status"] == "finished" and again["counts"]["finished"] == 120
    snapshots = await children(client, batch_id)
    assert_exact(again, snapshots)
    assert sum(1 for s in snapshots if s["retry_of"]) == final["counts"]["canceled"]
    assert (await client.delete(f"/batches/{batch_id}")).status_code == 204
    assert (await client.get(f"/batches/{batch_id}")).status_code == 404
    assert (await client.get(f"/jobs/{snapshots[0]['job_id']}")).status_code == 404


async def test_bad_input_is_a_clear_4xx_and_creates_nothing(client: httpx.AsyncClient) -> None:
    async def refused(body: Any, status: int, error: str) -> None:
        response = await client.post("/batches", json=body)
        assert (response.status_code, response.json()["error"]["type"]) == (status, error)

    await refused({"jobs": []}, 400, "InvalidRequest")
    await refused({"jobs": [count(1, 0)] * (MAX_BATCH_JOBS + 1)}, 400, "InvalidRequest")
    await refused({"jobs": [count(1, 0, weight=0)]}, 400, "InvalidRequest")
    await refused(
        {"jobs": [{"function": "demo.count", "kwargs": {"_x": 1}}]}, 400, "InvalidRequest"
    )
    await refused({"jobs": "nope"}, 400, "InvalidRequest")
    await refused(
        {"jobs": [count(1, 0, job_id="bad-a"), {"function": "no.such"}], "batch_id": "bad-1"},
        422,
        "UnknownFunction",
    )
    await refused({"jobs": [count(1, 0, job_id="dup")] * 2, "batch_id": "bad-2"}, 400,
                  "InvalidRequest")  # fmt: skip
    taken = (await client.post("/jobs", json=count(1, 0))).json()["job_id"]
    await refused(
        {"jobs": [count(1, 0, job_id="bad-b"), count(1, 0, job_id=taken)], "batch_id": "bad-3"},
        409,
        "BatchConflict",
    )
    for batch_id in ("bad-1", "bad-2", "bad-3"):
        assert (await client.get(f"/batches/{batch_id}")).status_code == 404
    for job_id in ("bad-a", "dup", "bad-b"):
        assert (await client.get(f"/jobs/{job_id}")).status_code == 404
    missing = await client.post("/batches/nope/jobs", json={"jobs": [count(1, 0)]})
    assert missing.status_code == 404
    assert (await client.get("/batches/bad id")).status_code == 400
    assert (await client.get("/batches/nope/jobs", params={"status": "odd"})).status_code == 400
    assert (await client.get("/batches", params={"limit": "0"})).status_code == 400
    assert (await client.get("/batches/x/events", params={"jobs": "no"})).status_code == 400
