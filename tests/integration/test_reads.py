"""Reads: snapshot reads coalesced into one round trip, waiting out a busy pool, over real Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence

import pytest
import redis.asyncio
from redis.asyncio import BlockingConnectionPool

from jobhub.core.exceptions import ServiceUnavailable
from jobhub.core.snapshot import Snapshot
from jobhub.store.reads import Reads
from jobhub.store.store import Store


async def always_up() -> None:
    return None


async def test_reads_asked_for_together_go_in_one_round_trip(store: Store) -> None:
    job_ids = [f"reads-{secrets.token_hex(6)}" for _ in range(50)]
    for job_id in job_ids:
        await store.create(Snapshot.queued(job_id, "demo.count"))
    trips: list[int] = []

    async def read_many(ids: Sequence[str]) -> list[bytes | None]:
        trips.append(len(ids))
        return await store.get_many(ids)

    reads: Reads[bytes | None] = Reads(read_many, always_up)
    wanted = [[job_ids[i % 50], "no-such-job"] for i in range(1000)]
    answers = await asyncio.gather(*(reads.get_many(ids) for ids in wanted))
    assert trips == [51]  # 1,000 reads in one step: one round trip, each job once
    for ids, (data, missing) in zip(wanted, answers, strict=True):
        assert data is not None and ids[0].encode() in data
        assert missing is None

    # Reads asked for while a batch is in flight go together in the next one.
    first = asyncio.create_task(reads.get_many([job_ids[0]]))
    await asyncio.sleep(0)  # the first batch is sent
    later = await asyncio.gather(*(reads.get_many([job_id]) for job_id in job_ids))
    await first
    assert trips[1:] == [1, 50]
    assert all(data is not None for [data] in later)


async def test_a_read_waits_out_a_busy_pool_instead_of_failing(redis_url: str) -> None:
    # One connection, and a pool that gives up on a wait after 50 ms.
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.05)
    client = redis.asyncio.Redis(connection_pool=pool)
    store = Store(client, result_ttl_seconds=3600)
    job_id = f"reads-{secrets.token_hex(6)}"
    await store.create(Snapshot.queued(job_id, "demo.count"))
    reads: Reads[bytes | None] = Reads(store.get_many, always_up)
    # The only connection is busy for half a second: ten times the pool's timeout.
    busy = asyncio.create_task(client.blpop([f"reads-nothing-{job_id}"], timeout=0.5))
    await asyncio.sleep(0.05)  # the BLPOP takes the connection before the read asks for it
    async with asyncio.timeout(10):
        [data] = await reads.get_many([job_id])
    assert data is not None and job_id.encode() in data
    await busy
    await client.aclose()


async def test_reads_fail_with_service_unavailable_only_when_redis_is_down() -> None:
    async def down() -> None:
        raise ServiceUnavailable("Redis is unreachable; try again shortly")

    # Nothing listens on this port: every connect is refused.
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")
    reads: Reads[bytes | None] = Reads(Store(client, result_ttl_seconds=60).get_many, down)
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await asyncio.gather(*(reads.get_many(["any"]) for _ in range(10)))
    await client.aclose()
