"""The operator's API against the real stack: retry, delete, deferral, detail, output pages
and stats, with real redis-server, `arq` CLI workers and uvicorn."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from jobhub.dev.server import Stack
from tests.support.helpers import start, wait_for

FAST = {"JOBHUB_WORKER_HEARTBEAT": "0.2", "JOBHUB_WORKER_LOST_AFTER": "1"}


async def test_retry_runs_an_ended_job_again_as_a_new_job(client: httpx.AsyncClient) -> None:
    failed = await start(client, "demo.fail", after=1, delay=0.01)
    old = await wait_for(client, failed["job_id"])
    assert old["status"] == "failed"
    # Two operators at once, or a double click: one new job, the second answer names it.
    answers = await asyncio.gather(*(client.post(f"/jobs/{old['job_id']}/retry") for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [200, 202], [a.text for a in answers]
    response = next(a for a in answers if a.status_code == 202)
    assert {a.json()["job_id"] for a in answers} == {response.json()["job_id"]}
    new = response.json()
    assert new["job_id"] != old["job_id"] and new["retry_of"] == old["job_id"]
    assert response.headers["location"] == f"/jobs/{new['job_id']}"
    final = await wait_for(client, new["job_id"])
    assert final["status"] == "failed" and final["error"]["detail"].endswith("after 1 steps")
    assert (await client.get(f"/jobs/{old['job_id']}")).json() == old  # final stays final


async def test_retry_and_delete_refuse_a_job_still_active(client: httpx.AsyncClient) -> None:
    running = await start(client, "demo.count", steps=50, delay=0.1)
    job_id = running["job_id"]
    for response in (
        await client.post(f"/jobs/{job_id}/retry"),
        await client.delete(f"/jobs/{job_id}"),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["snapshot"]["job_id"] == job_id
    await client.post(f"/jobs/{job_id}/cancel")


async def test_delete_removes_an_ended_job_and_all_kept_of_it(client: httpx.AsyncClient) -> None:
    job = await start(client, "demo.tokens", count=5, delay=0)
    await wait_for(client, job["job_id"])
    path = f"/jobs/{job['job_id']}"
    assert (await client.get(f"{path}/output")).json()["entries"]
    assert (await client.delete(path)).status_code == 204
    for suffix in ("", "/history", "/output", "/detail"):
        assert (await client.get(path + suffix)).status_code == 404, suffix
    listed = (await client.get("/jobs", params={"function": "demo.tokens"})).json()["jobs"]
    assert job["job_id"] not in {j["job_id"] for j in listed}
    assert (await client.delete(path)).status_code == 404


async def test_a_deferred_job_does_not_start_before_its_time(client: httpx.AsyncClient) -> None:
    began = time.monotonic()
    body = {"function": "demo.noop", "defer_seconds": 1.5}
    response = await client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "queued" and queued["start_at"] is not None
    assert queued["start_at"] in queued["message"]
    statuses = []
    async with asyncio.timeout(10):
        while (snap := (await client.get(f"/jobs/{queued['job_id']}")).json())["status"] != (
            "finished"
        ):
            statuses.append((time.monotonic() - began, snap["status"]))
            await asyncio.sleep(0.05)
    assert time.monotonic() - began >= 1.4
    assert all(status == "queued" for at, status in statuses if at < 1.4)
    assert (await client.post("/jobs", json={**body, "defer_seconds": -1})).status_code == 400


async def test_detail_gives_arguments_timings_and_worker(client: httpx.AsyncClient) -> None:
    job = await start(client, "demo.count", steps=2, delay=0.05)
    await wait_for(client, job["job_id"])
    detail = (await client.get(f"/jobs/{job['job_id']}/detail")).json()
    assert detail["arguments"] == {"args": [], "kwargs": {"steps": 2, "delay": 0.05}}
    assert detail["worker"]
    timings = detail["timings"]
    assert timings["created_at"] <= timings["started_at"] <= timings["ended_at"]
    assert timings["run_seconds"] >= 0.1 and timings["queued_seconds"] >= 0
    assert "kwargs" not in detail["snapshot"]  # arguments stay out of the public snapshot


async def test_output_pages_with_a_cursor_and_a_kind_filter(client: httpx.AsyncClient) -> None:
    job = await start(client, "demo.tokens", count=25, delay=0)
    await wait_for(client, job["job_id"])
    path = f"/jobs/{job['job_id']}/output"
    seen: list[dict[str, Any]] = []
    cursor = "0"
    while True:
        page = (await client.get(path, params={"after": cursor, "limit": 7})).json()
        if not page["entries"]:
            break
        seen += page["entries"]
        cursor = page["next"]
    assert [e["data"] for e in seen if e["kind"] == "output"] == [f"w{i} " for i in range(25)]
    assert len(seen) == 27 and len({e["id"] for e in seen}) == 27
    logs = (await client.get(path, params={"kind": "log"})).json()["entries"]
    assert [e["message"] for e in logs] == ["10 words so far", "20 words so far"]
    for bad in ({"after": "x"}, {"limit": "0"}, {"limit": "²"}, {"kind": "snapshot"}):
        assert (await client.get(path, params=bad)).status_code == 400, bad
    # Ids Redis cannot hold are the client's error, not Redis being down (a 503).
    for bad in ("99999999999999999999-0", "0-18446744073709551616", "18446744073709551616-0"):
        response = await client.get(path, params={"after": bad})
        assert response.status_code == 400, (bad, response.text)
    # After the last id a stream can hold, there is nothing (Redis refuses to read from it).
    last = (await client.get(path, params={"after": f"{2**64 - 1}-{2**64 - 1}"})).json()
    assert last["entries"] == []
    # A stream resumed from ids like these starts afresh or has nothing more: never cut.
    for held in ("1:99999999999999999999-0", f"1:{2**64 - 1}-{2**64 - 1}"):
        headers = {"Last-Event-ID": held}
        async with client.stream("GET", f"/jobs/{job['job_id']}/events", headers=headers) as r:
            body = (await r.aread()).decode()
        assert r.status_code == 200 and '"status":"finished"' in body, (held, body[-300:])


@pytest.fixture
async def two_workers(
    start_stack: Callable[..., Stack],
) -> AsyncIterator[tuple[Stack, httpx.AsyncClient]]:
    stack = start_stack(env=FAST, workers=2)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        yield stack, client


async def test_stats_counts_move_and_a_killed_worker_leaves_the_list(
    two_workers: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, client = two_workers
    async with asyncio.timeout(10):
        while len((await client.get("/stats")).json()["workers"]) < 2:
            await asyncio.sleep(0.1)
    stats = (await client.get("/stats")).json()
    assert stats["counts"] == {"queued": 0, "started": 0, "running": 0, "paused": 0}
    assert len(stats["ended_per_minute"]) == 60
    assert all("demo.count" in w["functions"] for w in stats["workers"])

    ids = [(await start(client, "demo.count", steps=20, delay=0.1))["job_id"] for _ in range(3)]
    deferred = await client.post("/jobs", json={"function": "demo.noop", "defer_seconds": 60})
    async with asyncio.timeout(10):
        while (await client.get("/stats")).json()["counts"]["running"] < 3:
            await asyncio.sleep(0.05)
    stats = (await client.get("/stats")).json()
    assert stats["counts"]["queued"] == 1 and stats["queue_depth"] >= 1
    assert sum(w["jobs"] for w in stats["workers"]) == 3

    failed = await start(client, "demo.fail", after=1, delay=0.01)
    await wait_for(client, failed["job_id"])
    for job_id in ids:
        await client.post(f"/jobs/{job_id}/cancel")
    await client.post(f"/jobs/{deferred.json()['job_id']}/cancel")
    async with asyncio.timeout(10):
        while (await client.get("/stats")).json()["counts"]["running"]:
            await asyncio.sleep(0.05)
    stats = (await client.get("/stats")).json()
    assert stats["counts"] == {"queued": 0, "started": 0, "running": 0, "paused": 0}
    # Canceled by the API, not by the workers' own writes: the workers let go of them too.
    async with asyncio.timeout(5):
        while sum(w["jobs"] for w in (await client.get("/stats")).json()["workers"]):
            await asyncio.sleep(0.1)
    now = stats["ended_per_minute"][-1]["failed"] + stats["ended_per_minute"][-2]["failed"]
    ended = sum(m["canceled"] for m in stats["ended_per_minute"][-2:])
    assert now == 1 and ended == 4

    stack.processes[0].send_signal(signal.SIGKILL)
    async with asyncio.timeout(10):
        while len((await client.get("/stats")).json()["workers"]) != 1:
            await asyncio.sleep(0.1)


async def test_a_job_canceled_after_its_worker_died_leaves_nothing_queued(
    two_workers: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, client = two_workers
    job_id = "orphan-" + os.urandom(4).hex()
    body = {"function": "demo.count", "job_id": job_id, "kwargs": {"steps": 50, "delay": 0.1}}
    assert (await client.post("/jobs", json=body)).status_code == 202
    async with asyncio.timeout(10):
        while (await client.get(f"/jobs/{job_id}")).json()["status"] != "running":
            await asyncio.sleep(0.05)
    holder = (await client.get(f"/jobs/{job_id}/detail")).json()["worker"]
    dead = next(p for p in stack.processes if str(p.pid) == holder.split(":")[1])
    dead.send_signal(signal.SIGKILL)
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    # Its worker never finishes ARQ's side of the run; recovery does, once it is lost.
    async with asyncio.timeout(10):
        while (await client.get("/stats")).json()["queue_depth"]:
            await asyncio.sleep(0.1)
    # So the id is free again once the job is deleted.
    assert (await client.delete(f"/jobs/{job_id}")).status_code == 204
    body["kwargs"] = {"steps": 2, "delay": 0.01}
    again = await client.post("/jobs", json=body)
    assert again.status_code == 202, again.text
    assert (await wait_for(client, job_id))["status"] == "finished"
