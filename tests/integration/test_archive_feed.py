"""The archive's feed: the step that ends a job appends it to the feed, once: always in a
process set up with the archive, in any other while the feed exists, never where there is
no archive."""

from __future__ import annotations

import secrets

import msgspec
import pytest
import redis.asyncio

from jobhub.core import keys
from jobhub.core.exceptions import JobIsFinal
from jobhub.core.snapshot import Snapshot, Status
from jobhub.store.feed import Feed
from jobhub.store.store import Store
from jobhub.store.writes import WriteBatch


async def fed_ids(client: redis.asyncio.Redis) -> list[str]:
    entries = await client.xrange(keys.ARCHIVE_FEED)
    return [msgspec.json.decode(fields[b"job"]) for _, fields in entries]


async def test_a_job_is_fed_in_the_step_that_ends_it_and_only_once(
    redis_client: redis.asyncio.Redis,
) -> None:
    await redis_client.delete(keys.ARCHIVE_FEED)
    store = Store(redis_client, result_ttl_seconds=60, archive_feed_max=1000, archive_on=True)
    job_id = "feed-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    await store.write(job_id, {"status": Status.RUNNING, "percent": 50.0})
    assert await fed_ids(redis_client) == []  # not ended: nothing to archive yet
    await store.write(job_id, {"status": Status.FINISHED, "result": 1})
    assert await fed_ids(redis_client) == [job_id]
    with pytest.raises(JobIsFinal):  # a write after the end is refused, and feeds nothing
        await store.write(job_id, {"status": Status.FAILED})
    assert await fed_ids(redis_client) == [job_id]


async def test_a_workers_writes_feed_too_and_keep_its_set_of_held_jobs(
    redis_client: redis.asyncio.Redis,
) -> None:
    await redis_client.delete(keys.ARCHIVE_FEED)
    store = Store(redis_client, result_ttl_seconds=60, archive_feed_max=1000, archive_on=True)
    batch = WriteBatch(store, owner="w-feed")
    job_id = "feed-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    await batch.submit(job_id, {"status": Status.STARTED})
    assert await redis_client.sismember(keys.worker_jobs("w-feed"), f'"{job_id}"')
    await batch.submit(job_id, {"status": Status.FAILED})
    assert not await redis_client.sismember(keys.worker_jobs("w-feed"), f'"{job_id}"')
    assert await fed_ids(redis_client) == [job_id]


async def test_where_there_is_no_archive_nothing_is_fed(
    redis_client: redis.asyncio.Redis,
) -> None:
    await redis_client.delete(keys.ARCHIVE_FEED)
    store = Store(redis_client, result_ttl_seconds=60)
    job_id = "feed-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    await store.write(job_id, {"status": Status.CANCELED})
    assert not await redis_client.exists(keys.ARCHIVE_FEED)  # not created for nobody


async def test_a_process_without_the_setting_feeds_once_an_archiver_made_the_feed(
    redis_client: redis.asyncio.Redis,
) -> None:
    """A worker started without JOBHUB_ARCHIVE_URL must not lose its jobs to the archive."""
    await redis_client.delete(keys.ARCHIVE_FEED)
    await Feed(redis_client).join()  # what an archiver does when it starts
    unset = WriteBatch(Store(redis_client, result_ttl_seconds=60), owner="w-unset")
    job_id = "feed-" + secrets.token_hex(6)
    await unset.store.create(Snapshot.queued(job_id, "demo.count"))
    await unset.submit(job_id, {"status": Status.STARTED})
    assert await fed_ids(redis_client) == []
    await unset.submit(job_id, {"status": Status.FINISHED, "result": 1})
    assert await fed_ids(redis_client) == [job_id]


async def test_the_feed_is_bounded(redis_client: redis.asyncio.Redis) -> None:
    await redis_client.delete(keys.ARCHIVE_FEED)
    store = Store(redis_client, result_ttl_seconds=60, archive_feed_max=10, archive_on=True)
    for _ in range(300):
        job_id = "feed-" + secrets.token_hex(6)
        await store.create(Snapshot.queued(job_id, "demo.count"))
        await store.write(job_id, {"status": Status.FINISHED})
    # MAXLEN ~ trims whole macro nodes (100 entries by default): about the bound, not exactly.
    assert 10 <= await redis_client.xlen(keys.ARCHIVE_FEED) <= 110
