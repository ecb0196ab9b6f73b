"""The archiver: reads the feed of ended jobs and writes them to the archive in batches.

    archiver = Archiver(Feed(redis), engine, ArchiverOptions(output=False))
    await archiver.run(stop)          # until ``stop`` is set

Each batch is read with the feed's consumer group, written in one transaction, and only then
acknowledged; so an archiver that dies mid-batch loses nothing: what it held stays pending,
and another archiver (or itself, restarted) claims it once it has been idle
``claim_idle_seconds``. A job written twice is upserted, never duplicated, so several
archivers may run at once. While the database is down the batch is tried again with
backoff and the feed holds what ends meanwhile (capped: the length is a metric and a
warning past half). If Redis restarted empty, the group is created again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import ResponseError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from jobhub.archive.records import JobRows, job_rows
from jobhub.archive.retention import Retention
from jobhub.archive.writer import write_batch
from jobhub.core.logs import job as log_job
from jobhub.core.metrics import ArchiveMetrics
from jobhub.store.feed import Feed

__all__ = ["Archiver", "ArchiverOptions", "consumer_name"]

logger = logging.getLogger("jobhub.archive")

_DOWN = (SQLAlchemyError, OSError, asyncio.TimeoutError)
"""What a database that is down, restarting or refusing a batch raises."""


@dataclass(frozen=True, slots=True)
class ArchiverOptions:
    output: bool = False
    """Archive each job's output entries too (``JOBHUB_ARCHIVE_OUTPUT``)."""
    batch_size: int = 200
    """Feed entries per batch (one transaction)."""
    claim_idle_seconds: float = 30.0
    """How long an entry stays pending with a stopped archiver before another claims it:
    longer than any batch takes, or a live archiver's batch would be written twice (which
    is safe, only wasted)."""
    feed_max: int = 100_000
    """The feed's cap (``JOBHUB_ARCHIVE_FEED_MAX``): past half of it the archiver warns."""
    retention: Retention | None = None
    retention_every_seconds: float = 300.0
    backoff_cap_seconds: float = 5.0
    """The longest wait between two tries of a batch the database could not take: how soon
    archiving resumes once it is back."""
    tries_before_isolating: int = 3
    """A batch that fails this often while the database answers is written job by job, so
    one job it cannot take (logged, then skipped) does not hold up every other."""


def consumer_name() -> str:
    """A name of this archiver's own in the group: host, process, and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Archiver:
    def __init__(
        self,
        feed: Feed,
        engine: AsyncEngine,
        options: ArchiverOptions,
        *,
        consumer: str | None = None,
        metrics: ArchiveMetrics | None = None,
    ) -> None:
        self.feed = feed
        self.engine = engine
        self.options = options
        self.consumer = consumer or consumer_name()
        self.metrics = metrics or ArchiveMetrics()
        self._claimed_at = 0.0
        self._checked_at = 0.0
        self._warned_at = 0.0
        self._pruned_at = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Archive until ``stop`` is set (a batch under way is finished first)."""
        await self.feed.join()
        logger.info("archiver %s reading the feed", self.consumer)
        while not stop.is_set():
            await self.step(stop)

    async def step(self, stop: asyncio.Event | None = None) -> int:
        """One round: claim what a stopped archiver left, else read new entries; archive
        them; now and then check the feed's length and prune. Returns the jobs archived."""
        try:
            entries = await self._next()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            logger.warning("the feed's group is gone (Redis restarted empty?): creating it")
            await self.feed.join()
            return 0
        archived = await self._archive(entries, stop) if entries else 0
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            await self._check_length(now)
        if now - self._pruned_at >= self.options.retention_every_seconds:
            self._pruned_at = now
            await self.prune()
            # Each archiver that stopped left its name in the group: forget those idle an
            # hour that hold nothing.
            await self.feed.forget_idle_consumers(idle_ms=3_600_000)
        return archived

    async def prune(self) -> int:
        """Apply retention now (the archiver does every ``retention_every_seconds``)."""
        if self.options.retention is None:
            return 0
        try:
            deleted = await self.options.retention.prune(self.engine)
        except _DOWN as exc:
            logger.warning("retention skipped this round: %s", exc)
            return 0
        if deleted:
            logger.info("retention deleted %d archived jobs", deleted)
        return deleted

    async def _next(self) -> list[tuple[str, str]]:
        now = time.monotonic()
        if now - self._claimed_at >= self.options.claim_idle_seconds / 2:
            idle_ms = int(self.options.claim_idle_seconds * 1000)
            claimed = await self.feed.claim(
                self.consumer, idle_ms=idle_ms, count=self.options.batch_size
            )
            if claimed:
                logger.info("claimed %d entries a stopped archiver left", len(claimed))
                return claimed  # soon again: there may be more
            self._claimed_at = now
        return await self.feed.read(self.consumer, count=self.options.batch_size)

    async def _check_length(self, now: float) -> None:
        length = await self.feed.length()
        self.metrics.feed_length.set(length)
        if length > self.options.feed_max / 2 and now - self._warned_at >= 60:
            self._warned_at = now
            logger.warning(
                "the archive's feed holds %d ended jobs, over half its cap of %d "
                "(JOBHUB_ARCHIVE_FEED_MAX): past it the oldest are dropped unarchived; "
                "is the database down, or are the archivers too few?",
                length,
                self.options.feed_max,
            )

    async def _archive(self, entries: Sequence[tuple[str, str]], stop: asyncio.Event | None) -> int:
        began = time.perf_counter()
        jobs = await self.feed.jobs([job_id for _, job_id in entries], output=self.options.output)
        archived_at = datetime.now(UTC)
        batch = []
        for job in jobs:
            rows = job_rows(job, archived_at=archived_at)
            if rows is None:
                # Deleted, or expired before any archiver came to it (JOBHUB_RESULT_TTL);
                # perhaps its id started another job since.
                self.metrics.missed.inc()
                logger.warning("job %s was gone from Redis before it was archived", job.job_id,
                               extra=log_job(job.job_id))  # fmt: skip
            else:
                batch.append(rows)
        if not await self._write(batch, stop):
            return 0  # stopping with the database down: the entries stay pending
        await self.feed.done([entry_id for entry_id, _ in entries])
        self.metrics.archived.inc(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - began)
        return len(batch)

    async def _write(self, batch: list[JobRows], stop: asyncio.Event | None) -> bool:
        """Commit ``batch``, trying again with backoff for as long as the database is down
        (the entries stay pending, unacknowledged, meanwhile); False if it stopped first."""
        delay, failures = 0.1, 0
        while True:
            try:
                async with self.engine.begin() as connection:
                    await write_batch(connection, batch)
                return True
            except _DOWN as exc:
                failures += 1
                self.metrics.failures.inc()
                if (
                    failures >= self.options.tries_before_isolating
                    and await self._answers()
                    and await self._write_one_by_one(batch)
                ):
                    return True
                logger.warning("archive batch not written (%s); trying again in %.1fs",
                               _short(exc), delay)  # fmt: skip
            if stop is not None and stop.is_set():
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.backoff_cap_seconds)

    async def _answers(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except _DOWN:
            return False

    async def _write_one_by_one(self, batch: list[JobRows]) -> bool:
        """Each job in a transaction of its own; one the database refuses while it answers
        is logged and skipped. False if the database went away meanwhile."""
        for rows in batch:
            try:
                async with self.engine.begin() as connection:
                    await write_batch(connection, [rows])
            except _DOWN as exc:
                if not await self._answers():
                    return False
                job_id = rows.job["id"]
                logger.error("job %s cannot be archived, skipped: %s", job_id, _short(exc),
                             extra=log_job(job_id))  # fmt: skip
        return True


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
