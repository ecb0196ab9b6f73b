"""Cancel, pause and resume, with a real uvicorn and a real ARQ worker (one job at a time)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.worker import create_worker

from jobhub import JobContext, Settings, create_app, job, worker_settings
from tests.support.servers import ThreadedServer, stop_worker

cleaned_up: list[str] = []


@job("t.loop")
async def loop(ctx: JobContext) -> None:
    try:
        for i in range(1, 1000):
            await asyncio.sleep(0.05)
            await ctx.report(min(i / 10, 100), f"tick {i}")
    finally:
        cleaned_up.append(ctx.job_id)


@job("t.steps")
async def steps(ctx: JobContext, n: int) -> dict[str, int]:
    for i in range(1, n + 1):
        await asyncio.sleep(0.05)
        await ctx.report(100 * i / n, f"step {i}/{n}")
    return {"steps": n}


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        redis_url=redis_url, queue_name="cancel:" + secrets.token_hex(4), max_jobs=1
    )
    functions = worker_settings([loop, steps], settings)
    worker = create_worker(functions, handle_signals=False, poll_delay=0.01)
    running = asyncio.create_task(worker.main())
    with ThreadedServer(create_app(settings)) as web:
        async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as client:
            while (await client.post("/jobs", json={"function": "t.nothing"})).json()["error"].get(
                "known", []
            ).count("t.loop") == 0:
                await asyncio.sleep(0.02)  # until the worker has announced t.loop
            yield client
    await stop_worker(worker, running)  # tests cancel their jobs, so theirs end


async def status_of(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    snapshot: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
    return snapshot


async def test_cancel_running_and_queued_jobs_and_refuse_ended_ones(api: httpx.AsyncClient) -> None:
    first = (await api.post("/jobs", json={"function": "t.loop"})).json()["job_id"]
    second = (await api.post("/jobs", json={"function": "t.loop"})).json()["job_id"]
    async with asyncio.timeout(10):
        while (await status_of(api, first))["status"] != "running":
            await asyncio.sleep(0.02)
    assert (await status_of(api, second))["status"] == "queued"  # one slot: it waits

    # The queued one: canceled at once, and it never runs.
    response = await api.post(f"/jobs/{second}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"

    # The running one: canceled, and ARQ aborts it, so its finally block runs.
    response = await api.post(f"/jobs/{first}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    async with asyncio.timeout(10):
        while first not in cleaned_up:
            await asyncio.sleep(0.02)
    stopped = await status_of(api, first)
    # A window for what must not happen: the worker is free now, it would have started the
    # second by then, and the first would have written again.
    await asyncio.sleep(0.3)
    assert await status_of(api, first) == stopped  # nothing was written after the cancel
    history = (await api.get(f"/jobs/{second}/history")).json()
    assert [s["status"] for s in history] == ["queued", "canceled"]
    assert second not in cleaned_up

    # Canceled already: asking again is answered with the job as it is, nothing written.
    again = await api.post(f"/jobs/{first}/cancel")
    assert again.status_code == 200
    assert again.json() == await status_of(api, first)
    assert again.json()["status"] == "canceled"


async def test_cancel_of_unknown_or_bad_ids(api: httpx.AsyncClient) -> None:
    assert (await api.post("/jobs/no-such-job/cancel")).status_code == 404
    assert (await api.post("/jobs/a.b/cancel")).status_code == 400


async def wait_status(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while (snapshot := await status_of(client, job_id))["status"] != status:
            await asyncio.sleep(0.02)
    return snapshot


async def test_pause_holds_the_job_and_resume_completes_it(api: httpx.AsyncClient) -> None:
    job_id = (await api.post("/jobs", json={"function": "t.steps", "kwargs": {"n": 20}})).json()[
        "job_id"
    ]
    await wait_status(api, job_id, "running")
    paused = await api.post(f"/jobs/{job_id}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert (await api.post(f"/jobs/{job_id}/pause")).json() == paused.json()  # twice: no-op
    # A window for what must not happen: in ten steps' time a job that kept going would
    # have written.
    await asyncio.sleep(0.5)
    held = await status_of(api, job_id)
    assert held["status"] == "paused" and held["seq"] == paused.json()["seq"]

    resumed = await api.post(f"/jobs/{job_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    final = await wait_status(api, job_id, "finished")
    assert final["result"] == {"steps": 20}
    statuses = [s["status"] for s in (await api.get(f"/jobs/{job_id}/history")).json()]
    assert statuses.count("paused") == 1
    assert "running" in statuses[statuses.index("paused") :]  # it went on after the pause
    late = await api.post(f"/jobs/{job_id}/resume")
    assert late.status_code == 409 and late.json()["snapshot"]["status"] == "finished"
    # An ended job that is not canceled: cancel is refused, with its snapshot.
    ended = await api.post(f"/jobs/{job_id}/cancel")
    assert ended.status_code == 409 and ended.json()["error"]["type"] == "JobIsFinal"
    assert ended.json()["snapshot"]["status"] == "finished"


async def test_a_job_that_has_not_reported_cannot_be_paused(api: httpx.AsyncClient) -> None:
    running = (await api.post("/jobs", json={"function": "t.loop"})).json()["job_id"]
    waiting = (await api.post("/jobs", json={"function": "t.loop"})).json()["job_id"]
    await wait_status(api, running, "running")
    refused = await api.post(f"/jobs/{waiting}/pause")
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"]["type"] == "WrongStatus"
    assert "reports progress" in body["error"]["detail"]
    assert body["snapshot"]["status"] == "queued"
    assert (await api.post(f"/jobs/{waiting}/resume")).status_code == 409
    for job_id in (running, waiting):
        await api.post(f"/jobs/{job_id}/cancel")


async def test_cancel_while_paused(api: httpx.AsyncClient) -> None:
    job_id = (await api.post("/jobs", json={"function": "t.loop"})).json()["job_id"]
    await wait_status(api, job_id, "running")
    assert (await api.post(f"/jobs/{job_id}/pause")).status_code == 200
    canceled = await api.post(f"/jobs/{job_id}/cancel")
    assert canceled.json()["status"] == "canceled"
    async with asyncio.timeout(10):
        while job_id not in cleaned_up:  # aborted inside its wait: its finally block ran
            await asyncio.sleep(0.02)
    assert (await status_of(api, job_id))["status"] == "canceled"
