"""The atomic snapshot write, against a real Redis."""

from __future__ import annotations

import asyncio
import secrets

import msgspec
import pytest
import redis.asyncio

from jobhub import keys
from jobhub.exceptions import JobIsFinal, JobNotFound
from jobhub.snapshot import Snapshot, Status, decode
from jobhub.store import Store


def new_id() -> str:
    return "t-" + secrets.token_hex(8)


async def test_create_is_idempotent_and_returns_the_existing_snapshot(store: Store) -> None:
    job_id = new_id()
    created, data = await store.create(Snapshot.queued(job_id, "demo.count"))
    again, existing = await store.create(Snapshot.queued(job_id, "demo.fail"))
    assert created and not again
    assert existing == data
    assert decode(existing).function == "demo.count"


async def test_write_stores_and_publishes_the_same_bytes(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(keys.job_channel(job_id))
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        snap = await store.update(
            job_id, lambda s: msgspec.structs.replace(s, status=Status.RUNNING, percent=5)
        )
        message = await pubsub.get_message(timeout=2)
    assert message is not None
    assert message["data"] == await store.get(job_id)
    assert decode(message["data"]) == snap
    assert snap.seq == 2


async def test_concurrent_writers_never_lose_an_update(store: Store) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))

    def append(tag: str):  # type: ignore[no-untyped-def]
        return lambda s: msgspec.structs.replace(
            s, status=Status.RUNNING, message=s.message + tag + ","
        )

    tags = [f"w{i}" for i in range(40)]
    await asyncio.gather(*(store.update(job_id, append(t)) for t in tags))
    final = await store.read(job_id)
    assert final is not None
    assert final.seq == 1 + len(tags)
    assert sorted(final.message.removeprefix("queued").strip(",").split(",")) == sorted(tags)


async def test_terminal_snapshot_is_final_and_expires(
    store: Store, redis_client: redis.asyncio.Redis
) -> None:
    job_id = new_id()
    await store.create(Snapshot.queued(job_id, "demo.count"))
    assert await redis_client.ttl(keys.job_snapshot(job_id)) == -1  # active jobs never expire
    done = await store.update(job_id, lambda s: msgspec.structs.replace(s, status=Status.FINISHED))
    ttl = await redis_client.ttl(keys.job_snapshot(job_id))
    assert 3590 < ttl <= 3600
    with pytest.raises(JobIsFinal):
        # Built on a stale snapshot: the script itself refuses it.
        await store.update(
            job_id,
            lambda s: msgspec.structs.replace(s, status=Status.RUNNING),
            current=decode_seq1(job_id),
        )
    with pytest.raises(JobIsFinal):
        await store.update(job_id, lambda s: msgspec.structs.replace(s, status=Status.RUNNING))
    assert await store.read(job_id) == done


def decode_seq1(job_id: str) -> Snapshot:
    return Snapshot.queued(job_id, "demo.count")


async def test_update_of_a_missing_job_is_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.update(new_id(), lambda s: s)
    with pytest.raises(JobNotFound):
        await store.update(new_id(), lambda s: s, current=Snapshot.queued("x", "demo.count"))


async def test_functions_registry(store: Store) -> None:
    await store.announce_functions(["t.one", "t.two"])
    assert await store.is_known_function("t.one")
    assert not await store.is_known_function("t.three")
    assert {"t.one", "t.two"} <= set(await store.known_functions())
