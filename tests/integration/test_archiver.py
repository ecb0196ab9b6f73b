"""The archiver's parts in the test process, against a real Redis and SQLite or PostgreSQL:
claiming what a dead archiver left, a group lost with Redis's data, jobs gone before they
were archived, output, the feed's warning, and retention."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobhub.archive import JOBS, OUTPUT, PROGRESS, migrate, open_engine
from jobhub.archive.archiver import Archiver, ArchiverOptions
from jobhub.archive.filters import parse_filter
from jobhub.archive.reads import ArchiveReads
from jobhub.archive.records import JobRows
from jobhub.archive.retention import Retention
from jobhub.archive.writer import write_batch
from jobhub.core import keys
from jobhub.core.settings import Settings
from jobhub.core.snapshot import Snapshot, Status
from jobhub.store.feed import Feed
from jobhub.store.store import Store
from tests.support.archive import new_database
from tests.support.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    postgres = request.getfixturevalue("postgres_server") if request.param != "sqlite" else None
    url = await asyncio.to_thread(new_database, request.param, tmp_path, postgres)
    engine = open_engine(url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def fed_store(redis_client: redis.asyncio.Redis) -> Store:
    await redis_client.delete(keys.ARCHIVE_FEED)
    return Store(redis_client, result_ttl_seconds=600, archive_feed_max=1000, archive_on=True)


async def end_jobs(store: Store, count: int, status: Status = Status.FINISHED) -> list[str]:
    ids = []
    for _ in range(count):
        job_id = "arc-" + secrets.token_hex(6)
        await store.create(Snapshot.queued(job_id, "demo.count", tags=["t"]))
        await store.write(job_id, {"status": Status.RUNNING, "percent": 50.0, "message": "half"})
        await store.write(job_id, {"status": status, "result": {"n": 1}})
        ids.append(job_id)
    return ids


async def rows(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as connection:
        found = await connection.execute(select(JOBS.c.id, JOBS.c.status))
        return {row.id: row.status for row in found}


async def drain(archiver: Archiver) -> None:
    for _ in range(20):
        await archiver.step()
        if await archiver.feed.length() == 0:
            return
    raise AssertionError("the feed did not drain")


async def test_what_a_dead_archiver_held_is_claimed_and_archived_once(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    ids = await end_jobs(fed_store, 12)
    feed = Feed(redis_client, block_ms=50)
    await feed.join()
    # The dead one: it was given every entry and wrote nothing, acknowledged nothing.
    assert len(await feed.read("dead", count=100)) == 12
    options = ArchiverOptions(batch_size=5, claim_idle_seconds=0.2)
    archiver = Archiver(feed, engine, options, consumer="alive")
    assert await archiver.step() == 0  # nothing new, and not idle long enough to claim
    await asyncio.sleep(0.25)
    await drain(archiver)
    assert await rows(engine) == dict.fromkeys(ids, "finished")
    pending = await redis_client.xpending(keys.ARCHIVE_FEED, "archivers")
    assert pending["pending"] == 0


async def test_two_archivers_at_once_write_each_job_once(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    ids = await end_jobs(fed_store, 30)
    one, two = (
        Archiver(Feed(redis_client, block_ms=50), engine, ArchiverOptions(batch_size=4),
                 consumer=name)
        for name in ("one", "two")
    )  # fmt: skip
    await one.feed.join()
    for _ in range(10):
        await asyncio.gather(one.step(), two.step())
    assert await rows(engine) == dict.fromkeys(ids, "finished")
    async with engine.connect() as connection:
        events = await connection.execute(select(func.count()).select_from(PROGRESS))
        assert events.scalar_one() == 3 * len(ids)  # queued, running, finished: once each


async def test_the_group_is_created_again_when_redis_lost_it(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    archiver = Archiver(Feed(redis_client, block_ms=50), engine, ArchiverOptions())
    await archiver.feed.join()
    await redis_client.delete(keys.ARCHIVE_FEED)  # as a Redis restarted empty would have it
    assert await archiver.step() == 0  # NOGROUP: joined again
    ids = await end_jobs(fed_store, 3)
    await drain(archiver)
    assert await rows(engine) == dict.fromkeys(ids, "finished")


async def test_a_job_gone_from_redis_is_counted_missed_and_not_retried_forever(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    gone, kept = await end_jobs(fed_store, 2)
    await redis_client.delete(keys.job_snapshot(gone))
    archiver = Archiver(Feed(redis_client, block_ms=50), engine, ArchiverOptions())
    await archiver.feed.join()
    await drain(archiver)
    assert await rows(engine) == {kept: "finished"}
    assert archiver.metrics.missed._value.get() == 1


async def test_output_is_archived_when_asked(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    job_id = "arc-" + secrets.token_hex(6)
    await fed_store.create(Snapshot.queued(job_id, "demo.tokens"))
    for word in ("one", "two"):
        await fed_store.write_many(
            [fed_store.prepare_entry(job_id, {"log": word}, run=None, owner=None)]
        )
    await fed_store.write(job_id, {"status": Status.FINISHED})
    archiver = Archiver(Feed(redis_client, block_ms=50), engine, ArchiverOptions(output=True))
    await archiver.feed.join()
    await drain(archiver)
    async with engine.connect() as connection:
        found = (await connection.execute(
            select(OUTPUT.c.ordinal, OUTPUT.c.entry).where(OUTPUT.c.job_id == job_id)
            .order_by(OUTPUT.c.ordinal)
        )).all()  # fmt: skip
    assert [(o, e) for o, e in found] == [(1, {"log": "one"}), (2, {"log": "two"})]


async def test_the_feed_past_half_its_cap_is_a_metric_and_a_warning(
    redis_client: redis.asyncio.Redis,
    fed_store: Store,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await end_jobs(fed_store, 7)
    options = ArchiverOptions(feed_max=10, batch_size=1)
    archiver = Archiver(Feed(redis_client, block_ms=50), engine, options)
    await archiver.feed.join()
    with caplog.at_level(logging.WARNING, logger="jobhub.archive"):
        await archiver.step()
    assert archiver.metrics.feed_length._value.get() == 6
    assert "over half its cap of 10" in caplog.text


def archived(job_id: str, status: Status, ended_days_ago: float) -> JobRows:
    ended = datetime.now(UTC) - timedelta(days=ended_days_ago)
    job = {
        "id": job_id, "function": "f", "status": status.value, "tags": [], "batch": None,
        "args": [], "kwargs": {}, "result": None, "error": None, "message": "", "percent": 0.0,
        "attempt": 1, "retry_of": None, "worker": None, "seq": 2, "created_at": ended,
        "started_at": None, "ended_at": ended, "run_seconds": None, "queued_seconds": None,
        "archived_at": ended,
    }  # fmt: skip
    event = {"job_id": job_id, "seq": 1, "status": status.value, "percent": 0.0,
             "message": "", "at": ended, "snapshot": {}}  # fmt: skip
    return JobRows(job, [event])


async def test_retention_deletes_only_what_is_past_its_statuss_days(engine: AsyncEngine) -> None:
    batch = [archived(f"old-ok-{i}", Status.FINISHED, 8) for i in range(1200)]
    batch += [archived("new-ok", Status.FINISHED, 6), archived("old-failed", Status.FAILED, 8)]
    batch += [
        archived("older-failed", Status.FAILED, 31),
        archived("old-canceled", Status.CANCELED, 8),
    ]
    async with engine.begin() as connection:
        await write_batch(connection, batch)
    settings = Settings(archive_keep_days=7, archive_keep_days_failed=30)
    retention = Retention.from_settings(settings)
    assert await retention.prune(engine) == 1200 + 1 + 1  # in transactions of 500
    assert await rows(engine) == {"new-ok": "finished", "old-failed": "failed"}
    async with engine.connect() as connection:
        left = await connection.execute(select(PROGRESS.c.job_id).order_by(PROGRESS.c.job_id))
        assert left.scalars().all() == ["new-ok", "old-failed"]
    assert await Retention.from_settings(Settings()).prune(engine) == 0  # unset: kept forever


async def test_an_entry_trimmed_while_pending_is_let_go_not_claimed_forever(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    ids = await end_jobs(fed_store, 3)
    feed = Feed(redis_client, block_ms=50)
    await feed.join()
    given = await feed.read("dead", count=10)
    await redis_client.xdel(keys.ARCHIVE_FEED, given[0][0])  # as the feed's cap would
    archiver = Archiver(feed, engine, ArchiverOptions(claim_idle_seconds=0.1), consumer="alive")
    await asyncio.sleep(0.15)
    await drain(archiver)
    assert await rows(engine) == dict.fromkeys(ids[1:], "finished")
    pending = await redis_client.xpending(keys.ARCHIVE_FEED, "archivers")
    assert pending["pending"] == 0
    assert await feed.forget_idle_consumers(idle_ms=0) == 2  # "dead" and "alive" hold nothing


async def test_forgetting_idle_archivers_of_a_feed_redis_lost_forgets_none_and_goes_on(
    redis_client: redis.asyncio.Redis,
) -> None:
    """Redis restarted empty between an archiver's read and its hourly clean-up of the
    group's names: the clean-up has nothing to forget, and says so, rather than ending the
    archiver (the next read makes the group again)."""
    feed = Feed(redis_client, block_ms=50)
    await feed.join()
    await feed.read("gone", count=1)
    await redis_client.delete(keys.ARCHIVE_FEED)  # the stream and its group with it
    assert await feed.forget_idle_consumers(idle_ms=0) == 0
    await redis_client.xadd(keys.ARCHIVE_FEED, {"job": b'"x"'})  # a stream with no group
    assert await feed.forget_idle_consumers(idle_ms=0) == 0
    await redis_client.delete(keys.ARCHIVE_FEED)


async def test_a_nul_in_a_jobs_values_is_kept_as_u_fffd_and_the_filters_still_work(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    # PostgreSQL's jsonb, which the arg. filters cast to, refuses NUL: kept as it was, one
    # such job made every arg. filter fail there.
    job_id = "arc-" + secrets.token_hex(6)
    arguments = {"args": ["a\x00"], "kwargs": {"user": "a\x00b", "nested": {"k\x00": ["\x00"]}}}
    await fed_store.create(
        Snapshot.queued(job_id, "demo.count"), hidden={"arguments": msgspec.json.encode(arguments)}
    )
    await fed_store.write(job_id, {"status": Status.FINISHED, "message": "m\x00",
                                   "result": {"out\x00": "x\x00y"}})  # fmt: skip
    ok = await end_jobs(fed_store, 1)
    archiver = Archiver(Feed(redis_client, block_ms=50), engine, ArchiverOptions())
    await archiver.feed.join()
    await drain(archiver)
    assert await rows(engine) == {job_id: "finished", ok[0]: "finished"}
    reads = ArchiveReads(engine)
    for query in ({"arg.user": "a\ufffdb"}, {"arg.0": "a\ufffd"}):
        page = await reads.page(parse_filter(query), cursor=None, limit=10)
        assert [row.id for row in page.rows] == [job_id], query
    row = await reads.job(job_id)
    assert row is not None
    assert row.args == ["a\ufffd"]
    assert row.kwargs == {"user": "a\ufffdb", "nested": {"k\ufffd": ["\ufffd"]}}
    assert row.result == {"out\ufffd": "x\ufffdy"}
    assert row.message == "m\ufffd"
    assert [event.snapshot["message"] for event in await reads.events(job_id)][-1] == "m\ufffd"


async def history_of(engine: AsyncEngine, job_id: str) -> list[tuple[int, str]]:
    async with engine.connect() as connection:
        found = await connection.execute(
            select(PROGRESS.c.seq, PROGRESS.c.status)
            .where(PROGRESS.c.job_id == job_id)
            .order_by(PROGRESS.c.seq)
        )
        return [(seq, status) for seq, status in found]


async def test_an_id_used_again_keeps_its_last_run_and_never_a_run_not_ended(
    redis_client: redis.asyncio.Redis, fed_store: Store, engine: AsyncEngine
) -> None:
    archiver = Archiver(Feed(redis_client, block_ms=50), engine, ArchiverOptions())
    await archiver.feed.join()
    # Deleted before it was archived, and its id started again: the feed's entry of the first
    # run finds the second queued, which is not archived (it is fed when it ends).
    (job_id,) = await end_jobs(fed_store, 1)
    assert await fed_store.delete(job_id) == Status.FINISHED
    await fed_store.create(Snapshot.queued(job_id, "demo.count"))
    await drain(archiver)
    assert await rows(engine) == {}
    assert archiver.metrics.missed._value.get() == 1
    await fed_store.write(job_id, {"status": Status.RUNNING, "percent": 50.0})
    await fed_store.write(job_id, {"status": Status.FINISHED, "result": {"n": 1}})
    await drain(archiver)
    assert await rows(engine) == {job_id: "finished"}
    assert await history_of(engine, job_id) == [(1, "queued"), (2, "running"), (3, "finished")]
    # Archived, deleted, used again: the archive keeps the last run under the id, its history
    # only (none of the first run's rows past the second's last seq).
    assert await fed_store.delete(job_id) == Status.FINISHED
    await fed_store.create(Snapshot.queued(job_id, "demo.count"))
    await fed_store.write(job_id, {"status": Status.CANCELED})
    await drain(archiver)
    assert await rows(engine) == {job_id: "canceled"}
    assert await history_of(engine, job_id) == [(1, "queued"), (2, "canceled")]


async def test_a_batch_acknowledged_survives_postgresql_dying_at_once(
    redis_client: redis.asyncio.Redis, fed_store: Store, tmp_path: Path
) -> None:
    # The feed's entries are acknowledged and deleted once the batch's commit returns. With
    # synchronous_commit off (the test server's, and a common tuning) PostgreSQL returns
    # before the commit is on disk, and its WAL writer (every 10 s here) flushes it later.
    with PostgresServer("wal_writer_delay=10000") as postgres:
        url = await asyncio.to_thread(new_database, "postgresql", tmp_path, postgres)
        engine = open_engine(url)
        await migrate(engine)
        archiver = Archiver(Feed(redis_client, block_ms=50), engine, ArchiverOptions())
        await archiver.feed.join()
        ids = await end_jobs(fed_store, 3)
        await drain(archiver)
        await engine.dispose()
        postgres.crash()
        postgres.start()
        engine = open_engine(url)
        try:
            assert await rows(engine) == dict.fromkeys(ids, "finished")
        finally:
            await engine.dispose()
