"""The archive's side of Redis: the feed of ended jobs, read as one consumer group, and what
Redis still holds of each job fed (its snapshot, history, arguments and output).

    feed = Feed(redis)
    await feed.join()                                   # the group, created if missing
    entries = await feed.read("archiver-1", count=200)  # (entry id, job id) pairs
    jobs = await feed.jobs([job_id for _, job_id in entries], output=False)
    await feed.done([entry_id for entry_id, _ in entries])

An entry stays pending in the group until ``done``: an archiver that dies before it has
written its batch leaves its entries for another one to ``claim``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from jobhub.core import keys

__all__ = ["GROUP", "FedJob", "Feed"]

GROUP = "archivers"
"""The consumer group every archiver reads the feed in: each entry goes to one of them."""


@dataclass(frozen=True, slots=True)
class FedJob:
    """What Redis holds of one job fed to the archive; ``data`` is None once it is gone (it
    expired or was deleted before an archiver came to it)."""

    job_id: str
    data: bytes | None
    arguments: bytes | None
    worker: str | None
    started_at: str | None
    history: list[bytes]
    output: list[tuple[str, bytes]]


class Feed:
    """The feed (``keys.ARCHIVE_FEED``) and the jobs it names, over a ``redis.asyncio``
    client whose connections wait at least ``block_ms`` for a reply."""

    def __init__(self, redis: Redis, *, block_ms: int = 1000) -> None:
        self._redis = redis
        self._block_ms = block_ms

    async def join(self) -> None:
        """Create the group (and the feed) unless it exists: at start, and again when Redis
        answers NOGROUP (it restarted empty). The group starts at the feed's beginning, so
        entries fed before any archiver ran are archived too."""
        try:
            await self._redis.xgroup_create(keys.ARCHIVE_FEED, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, *, count: int, new: bool = True) -> list[tuple[str, str]]:
        """Up to ``count`` entries for ``consumer``: new ones (waiting up to ``block_ms`` for
        one), or with ``new=False`` those it was given before and has not marked done."""
        start = ">" if new else "0"
        block = self._block_ms if new else None
        reply = await self._redis.xreadgroup(
            GROUP, consumer, {keys.ARCHIVE_FEED: start}, count=count, block=block
        )
        return [_entry(entry) for _, entries in reply or [] for entry in entries]

    async def claim(self, consumer: str, *, idle_ms: int, count: int) -> list[tuple[str, str]]:
        """Take over up to ``count`` entries left pending at least ``idle_ms`` by another
        archiver (one that died mid-batch), and return them."""
        # By id first, then read: an entry the feed's cap trimmed while it was pending
        # comes back from XAUTOCLAIM without its id on Redis 6.2, so it could never be let go.
        claimed = await self._redis.xautoclaim(
            keys.ARCHIVE_FEED, GROUP, consumer, idle_ms, start_id="0-0", count=count, justid=True
        )
        if not claimed:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in claimed:
                pipe.xrange(keys.ARCHIVE_FEED, entry_id, entry_id)
            read = await pipe.execute()
        found = [_entry(entries[0]) for entries in read if entries]
        trimmed = [entry_id for entry_id, entries in zip(claimed, read, strict=True) if not entries]
        if trimmed:
            # Its job is lost to the archive; acknowledged, it stops coming back.
            await self._redis.xack(keys.ARCHIVE_FEED, GROUP, *trimmed)
        return found

    async def done(self, entry_ids: Sequence[str]) -> None:
        """Acknowledge entries whose jobs are written, and delete them: the feed's length is
        then exactly the archiver's backlog, and its cap only ever drops what it has not
        archived."""
        if not entry_ids:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(keys.ARCHIVE_FEED, GROUP, *entry_ids)
            pipe.xdel(keys.ARCHIVE_FEED, *entry_ids)
            await pipe.execute()

    async def length(self) -> int:
        """Entries in the feed: jobs ended and not archived yet."""
        return int(await self._redis.xlen(keys.ARCHIVE_FEED))

    async def forget_idle_consumers(self, idle_ms: int) -> int:
        """Remove consumers that hold nothing and were idle ``idle_ms`` (archivers that
        stopped): each restart names a new one. Returns how many."""
        removed = 0
        try:
            consumers = await self._redis.xinfo_consumers(keys.ARCHIVE_FEED, GROUP)
        except ResponseError as exc:
            # Redis lost the feed (restarted empty) since this archiver's last read: there
            # is no name to forget, and its next read makes the group again.
            if "NOGROUP" in str(exc) or "no such key" in str(exc):
                return 0
            raise
        for consumer in consumers:
            if consumer["pending"] == 0 and consumer["idle"] >= idle_ms:
                name = consumer["name"]
                await self._redis.xgroup_delconsumer(keys.ARCHIVE_FEED, GROUP, name)
                removed += 1
        return removed

    async def jobs(self, job_ids: Sequence[str], *, output: bool) -> list[FedJob]:
        """What Redis holds of each job, in one round trip; with ``output`` its output
        entries too (``(stream id, JSON)``)."""
        fields = ["data", "arguments", "worker", "started_at"]
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(keys.job_snapshot(job_id), fields)
                pipe.lrange(keys.job_history(job_id), 0, -1)
                if output:
                    pipe.xrange(keys.job_output(job_id), "-", "+")
            replies = iter(await pipe.execute())
        found = []
        for job_id in job_ids:
            data, arguments, worker, started_at = next(replies)
            history = next(replies)
            entries = next(replies) if output else []
            found.append(
                FedJob(
                    job_id=job_id,
                    data=data,
                    arguments=arguments,
                    worker=None if worker is None else worker.decode(),
                    started_at=None if started_at is None else started_at.decode(),
                    history=list(history),
                    output=[(eid.decode(), entry[b"e"]) for eid, entry in entries],
                )
            )
        return found


def _entry(entry: tuple[bytes, dict[bytes, bytes]]) -> tuple[str, str]:
    entry_id, fields = entry
    return entry_id.decode(), msgspec.json.decode(fields[b"job"], type=str)
