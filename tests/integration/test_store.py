"""The atomic snapshot write, against a real Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio
from redis.asyncio.client import PubSub

from jobhub.core import keys
from jobhub.core.exceptions import InvalidRequest, JobIsFinal, JobNotFound, RunSuperseded
from jobhub.core.snapshot import JobError, Snapshot, Status, decode, encode
from jobhub.store.store import Store


def new_id() -> str:
    return "t-" + secrets.token_hex(8)


@asynccontextmanager
async def subscribed(client: redis.asyncio.Redis, job_id: str) -> AsyncIterator[PubSub]:
    """A pub/sub connection subscribed to the job's channel, confirmation consumed."""
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(keys.job_channel(job_id))
        await pubsub.get_message(timeout=1)
        yield pubsub


async def test_create_is_idempotent_and_returns_the_existing_snapshot(store: Store) -> None:
    job_id = new_id()
    snap = Snapshot.queued(job_id, "demo.count")
    created, data = await store.create(snap)
    again, existing = await store.create(Snapshot.queued(job_id, "demo.fail"))
    assert created and not again
    assert data == existing == encode(snap)  # Lua assembles exactly what msgspec encodes
    assert decode(existing).function == "demo.count"


async def test_write_assembles_the_same_json_the_model_encodes(store: Store) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    patch = {
        "status": Status.FAILED,
        "percent": 12.5,
        "message": 'quote " and \\ and é and \n',
        "result": {"nested": [1, 2.5, None, True, {"a": []}]},
        "error": JobError("ValueError", "boom"),
        "attempt": 3,
    }
    data = await store.write(job_id, patch)
    snap = decode(data)
    assert encode(snap) == data
    assert (snap.status, snap.percent, snap.message, snap.attempt, snap.seq) == (
        Status.FAILED, 12.5, patch["message"], 3, 2,
    )  # fmt: skip
    assert snap.result == patch["result"]
    assert snap.error == patch["error"]


async def test_write_stores_and_publishes_the_same_bytes(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    async with subscribed(redis_client, job_id) as pubsub:
        data = await store.write(job_id, {"status": Status.RUNNING, "percent": 5.0})
        message = await pubsub.get_message(timeout=2)
    assert message is not None
    assert message["data"] == data == await store.get(job_id)
    assert decode(data).seq == 2


async def test_concurrent_writers_each_get_their_own_seq_in_publish_order(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    async with subscribed(redis_client, job_id) as pubsub:
        writes = [
            store.write(job_id, {"status": Status.RUNNING, "message": f"w{i}"}) for i in range(40)
        ]
        results = await asyncio.gather(*writes)
        published = []
        while len(published) < 40:
            message = await pubsub.get_message(timeout=2)
            assert message is not None
            published.append(decode(message["data"]))
    assert sorted(decode(r).seq for r in results) == list(range(2, 42))
    assert [s.seq for s in published] == list(range(2, 42))
    assert sorted(s.message for s in published) == sorted(f"w{i}" for i in range(40))


async def test_terminal_snapshot_is_final_and_expires(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    assert await redis_client.ttl(keys.job_snapshot(job_id)) == -1  # active jobs never expire
    await store.write(job_id, {"status": Status.RUNNING, "percent": 50.0})
    assert await redis_client.ttl(keys.job_snapshot(job_id)) == -1
    done = await store.write(job_id, {"status": Status.FINISHED})
    ttl = await redis_client.ttl(keys.job_snapshot(job_id))
    assert 3590 < ttl <= 3600
    with pytest.raises(JobIsFinal) as info:
        await store.write(job_id, {"status": Status.RUNNING, "percent": 60.0})
    assert info.value.status == "finished"
    assert await store.get(job_id) == done


async def test_write_to_a_missing_job_is_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.write(new_id(), {"message": "x"})


async def test_only_snapshot_fields_can_be_patched(store: Store) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    for bad in ({"seq": 99}, {"job_id": "other"}, {"data": "x"}, {"colour": "red"}):
        with pytest.raises(InvalidRequest):
            await store.write(job_id, bad)
    snap = await store.read(job_id)
    assert snap is not None and snap.seq == 1


async def test_unencodable_value_is_a_type_error_and_stores_nothing(store: Store) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    with pytest.raises(TypeError):
        await store.write(job_id, {"result": object()})
    assert (await store.read(job_id)) == decode(
        (await store.create(Snapshot.queued(job_id, "x")))[1]
    )


async def test_a_run_token_fences_off_every_older_run(store: Store) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    await store.write(job_id, {"status": Status.STARTED}, hidden={"run": "first"})
    await store.write(job_id, {"percent": 10.0}, run="first")
    await store.write(job_id, {"status": Status.STARTED}, hidden={"run": "second"})
    with pytest.raises(RunSuperseded):
        await store.write(job_id, {"percent": 90.0}, run="first")
    with pytest.raises(RunSuperseded):
        await store.write(job_id, {"status": Status.FINISHED}, run="first")
    final = decode(await store.write(job_id, {"status": Status.FINISHED}, run="second"))
    assert final.status is Status.FINISHED and final.percent == 10.0


async def test_write_many_keeps_order_and_refuses_what_follows_a_terminal_write(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    a, b = new_id(), new_id()
    for job_id in (a, b):
        await store.create(Snapshot.queued(job_id, "demo.count"))
    async with subscribed(redis_client, a) as pubsub:
        results = await store.write_many(
            [
                store.prepare(a, {"status": Status.STARTED}),
                store.prepare(a, {"status": Status.FINISHED, "result": 1}),
                store.prepare(a, {"status": Status.RUNNING, "percent": 9.0}),
                store.prepare(b, {"status": Status.STARTED}),
            ]
        )
        published = [await pubsub.get_message(timeout=1) for _ in range(2)]
    assert [decode(r).seq for r in results[:2] if isinstance(r, bytes)] == [2, 3]
    assert isinstance(results[2], JobIsFinal)
    assert isinstance(results[3], bytes) and decode(results[3]).job_id == b
    # Each write of the group is its own snapshot, published in turn.
    assert [decode(m["data"]).status for m in published if m] == [Status.STARTED, Status.FINISHED]
    final = await store.read(a)
    assert final is not None and final.status is Status.FINISHED and final.seq == 3


async def test_write_with_function_creates_a_missing_job_as_queued_first(store: Store) -> None:
    job_id = new_id()
    [result] = await store.write_many(
        [store.prepare(job_id, {"status": Status.STARTED}, function="demo.count")]
    )
    assert isinstance(result, bytes)
    snap = decode(result)
    assert (snap.status, snap.function, snap.seq) == (Status.STARTED, "demo.count", 1)
    assert snap.created_at == snap.updated_at
    # Once it exists, `function` changes nothing but the patch.
    data = await store.write_many([store.prepare(job_id, {"message": "m"}, function="other")])
    assert decode(data[0]).function == "demo.count"  # type: ignore[arg-type]


async def test_scripts_are_reloaded_after_redis_forgets_them(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    await redis_client.script_flush()
    data = await store.write(job_id, {"status": Status.RUNNING})
    assert decode(data).seq == 2
    await redis_client.script_flush()
    two = await store.write_many(
        [store.prepare(job_id, {"percent": 1.0}), store.prepare(new_id(), {"percent": 2.0})]
    )
    assert decode(two[0]).seq == 3  # type: ignore[arg-type]
    assert isinstance(two[1], JobNotFound)


async def test_history_keeps_every_snapshot_in_seq_order_capped(
    redis_client: redis.asyncio.Redis,
) -> None:
    store = Store(redis_client, result_ttl_seconds=3600, history_limit=5)
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    for i in range(3):
        await store.write(job_id, {"status": Status.RUNNING, "percent": float(i)})
    history = [decode(entry) for entry in await store.history(job_id)]
    assert [s.seq for s in history] == [1, 2, 3, 4]
    assert history[-1] == await store.read(job_id)
    for i in range(4):
        await store.write(job_id, {"status": Status.RUNNING, "percent": float(10 + i)})
    await store.write(job_id, {"status": Status.FINISHED})
    history = [decode(entry) for entry in await store.history(job_id)]
    assert [s.seq for s in history] == [5, 6, 7, 8, 9]  # the newest five
    assert 0 < await redis_client.ttl(keys.job_history(job_id)) <= 3600  # expires with the job
