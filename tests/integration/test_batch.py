"""The worker's write batching, against a real Redis."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from jobhub.core.exceptions import JobIsFinal
from jobhub.core.snapshot import Snapshot, Status, decode
from jobhub.store.store import Store
from jobhub.store.writes import WriteBatch


async def test_writes_of_one_tick_share_a_round_trip_and_keep_their_order(store: Store) -> None:
    ids = ["b-" + secrets.token_hex(6) for _ in range(5)]
    for job_id in ids:
        await store.create(Snapshot.queued(job_id, "demo.count"))
    sent: list[int] = []
    real = store.write_many

    async def counting(writes):  # type: ignore[no-untyped-def]
        sent.append(len(writes))
        return await real(writes)

    store.write_many = counting  # type: ignore[method-assign]
    batch = WriteBatch(store)
    futures = []
    for job_id in ids:
        futures.append(batch.submit(job_id, {"status": Status.STARTED}))
        futures.append(batch.submit(job_id, {"status": Status.RUNNING, "percent": 50.0}))
    results = await asyncio.gather(*futures)
    assert sent == [10]
    for job_id, started, running in zip(ids, results[::2], results[1::2], strict=True):
        assert (decode(started).job_id, decode(started).seq) == (job_id, 2)
        assert decode(running).seq == 3


async def test_writes_made_during_a_round_trip_go_in_the_next(store: Store) -> None:
    job_id = "b-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    batch = WriteBatch(store)
    first = batch.submit(job_id, {"percent": 1.0})
    await asyncio.sleep(0)  # the flush has taken `first` and is waiting for Redis
    second = batch.submit(job_id, {"percent": 2.0})
    assert decode(await first).seq == 2
    assert decode(await second).seq == 3


async def test_errors_reach_the_writer_that_made_the_write(store: Store) -> None:
    job_id = "b-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    batch = WriteBatch(store)
    done = batch.submit(job_id, {"status": Status.FINISHED})
    late = batch.submit(job_id, {"status": Status.RUNNING})
    assert decode(await done).status is Status.FINISHED
    with pytest.raises(JobIsFinal):
        await late
    with pytest.raises(TypeError):
        batch.submit(job_id, {"result": object()})  # refused before anything is sent
