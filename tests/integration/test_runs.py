"""A run's edges with a real in-process ARQ worker: paused time and the time limit, results
JSON cannot carry, and jobhub's errors surviving ARQ's pickling."""

from __future__ import annotations

import asyncio
import pickle
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from arq.constants import job_key_prefix
from arq.jobs import Job
from arq.worker import create_worker

from jobhub import JobContext, Settings, job, worker_settings
from jobhub.core.exceptions import JobIsFinal, RunSuperseded, UnknownFunction, WrongStatus
from jobhub.core.snapshot import Status
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.store.store import Store
from tests.support.servers import stop_worker


@job("t.patient", timeout=0.6)
async def patient(ctx: JobContext) -> str:
    for i in range(1, 5):
        await asyncio.sleep(0.1)
        await ctx.report(25.0 * i, f"step {i}")
    return "done"


@job("t.undecodable_names")
async def undecodable_names(ctx: JobContext) -> list[str]:
    # What os.listdir returns for a file name that is not valid UTF-8.
    return [b"report-\xff.csv".decode("utf-8", "surrogateescape")]


@pytest.fixture
async def lifecycle(redis_url: str) -> AsyncIterator[Lifecycle]:
    settings = Settings(redis_url=redis_url, queue_name="runs:" + secrets.token_hex(4))
    worker = create_worker(
        worker_settings([patient, undecodable_names], settings),
        handle_signals=False,
        poll_delay=0.01,
    )
    running = asyncio.create_task(worker.main())
    client = redis.asyncio.Redis.from_url(redis_url)
    yield Lifecycle(client, Store(client, result_ttl_seconds=60), queue_name=settings.queue_name)
    await stop_worker(worker, running)
    await client.aclose()


async def until(lifecycle: Lifecycle, job_id: str, statuses: set[Status]) -> Status:
    async with asyncio.timeout(10):
        while True:
            snapshot = await lifecycle.store.read(job_id)
            if snapshot is not None and snapshot.status in statuses:
                return snapshot.status
            await asyncio.sleep(0.01)


async def test_time_spent_paused_does_not_count_against_the_time_limit(
    lifecycle: Lifecycle,
) -> None:
    job_id, _, _ = await lifecycle.create("t.patient", [], {})
    await until(lifecycle, job_id, {Status.RUNNING})
    await lifecycle.pause(job_id)
    await asyncio.sleep(1.0)  # longer than the whole limit of 0.6 s
    await lifecycle.resume(job_id)
    await until(lifecycle, job_id, {Status.FINISHED, Status.FAILED})
    final = await lifecycle.store.read(job_id)
    assert final is not None and final.status is Status.FINISHED, final
    assert final.result == "done"


async def test_a_result_json_cannot_carry_fails_the_job_saying_why(
    lifecycle: Lifecycle, redis_client: redis.asyncio.Redis
) -> None:
    job_id, _, _ = await lifecycle.create("t.undecodable_names", [], {})
    await until(lifecycle, job_id, {Status.FINISHED, Status.FAILED})
    final = await lifecycle.store.read(job_id)
    assert final is not None and final.status is Status.FAILED
    assert final.error is not None and "not JSON-serializable" in final.error.detail
    # The snapshot is the record of the failure: once ARQ is done with the run (its job
    # key gone), it keeps no pickled copy of it.
    async with asyncio.timeout(5):
        while await redis_client.exists(job_key_prefix + job_id):
            await asyncio.sleep(0.01)
    assert await Job(job_id, redis_client).result_info() is None


@pytest.mark.parametrize(
    "error",
    [
        JobIsFinal("j", "finished"),
        WrongStatus("j", "queued", "job 'j' is queued: only a paused job can be resumed"),
        RunSuperseded("j", "abc"),
        UnknownFunction("f", ["a", "b"]),
    ],
)
def test_errors_survive_pickling_as_arq_stores_them(error: Exception) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert again.to_body() == error.to_body()  # type: ignore[attr-defined]
    assert str(again) == str(error)
