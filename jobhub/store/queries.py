"""Every read of job state in Redis: snapshots, histories, the listing, output, counts.

``Store`` inherits these, so that one object both writes a job and reads it; they are kept
here, apart from the writes, because none of them runs a script or changes what a reader
sees (``list_jobs`` only prunes index entries of jobs that have expired).

    data = await store.get(job_id)
    page, cursor = await store.list_jobs(status=Status.RUNNING, limit=20)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

import msgspec
from redis.asyncio import Redis

from jobhub.core import keys
from jobhub.core.positions import LAST_ENTRY, entry_key
from jobhub.core.snapshot import TERMINAL, Snapshot, Status, decode
from jobhub.store.lua.tags import TAG_CHANGES_KEPT

__all__ = ["Queries"]

# The `type: ignore[misc]` below: redis-py types each command as one union of its sync and
# async results, which mypy cannot await.

_encode = msgspec.json.Encoder().encode
_decode_tags = msgspec.json.Decoder(list[str]).decode


def _has_tag(tags: bytes | None, tag: str) -> bool:
    """Whether a stored snapshot's ``tags`` field (JSON) holds ``tag``: a tag's index and
    change log name jobs by id, and an id is free again once its job is deleted or expired."""
    return tags is not None and tag in _decode_tags(tags)


class Queries:
    """Reads of job state, over a ``redis.asyncio`` client."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, job_id: str) -> bytes | None:
        """The latest snapshot's JSON, as stored and published."""
        data = await self._redis.hget(keys.job_snapshot(job_id), "data")  # type: ignore[misc]
        return cast(bytes | None, data)

    async def get_versioned(self, job_id: str) -> tuple[int, bytes] | None:
        """``(seq, JSON)`` of the latest snapshot, for answers that carry an ETag."""
        seq, data = await self._redis.hmget(keys.job_snapshot(job_id), ["seq", "data"])  # type: ignore[misc]
        return None if data is None else (int(seq), data)

    async def read(self, job_id: str) -> Snapshot | None:
        data = await self.get(job_id)
        return None if data is None else decode(data)

    async def get_many(self, job_ids: Sequence[str]) -> list[bytes | None]:
        """The latest snapshot JSON of each job, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job_snapshot(job_id), "data")
            return await pipe.execute()

    async def exist_many(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job has a snapshot, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(keys.job_snapshot(job_id))
            return [bool(n) for n in await pipe.execute()]

    async def deleted_many(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job was deleted lately (its tombstone lives), in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(keys.job_deleted(job_id))
            return [bool(n) for n in await pipe.execute()]

    async def hidden(self, job_id: str, *names: str) -> list[str | None]:
        """Fields kept beside a job's snapshot and not in it (``run``, ``worker``, …)."""
        values = await self._redis.hmget(keys.job_snapshot(job_id), list(names))  # type: ignore[misc]
        return [None if v is None else v.decode() for v in values]

    async def hidden_many(self, job_ids: Sequence[str], name: str) -> list[str | None]:
        """The field ``name`` kept beside each job's snapshot (see ``hidden``), in one
        round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job_snapshot(job_id), name)
            values = await pipe.execute()
        return [None if v is None else v.decode() for v in values]

    async def history(self, job_id: str) -> list[bytes]:
        """Every snapshot of the job still in its capped history, in seq order."""
        return await self._redis.lrange(keys.job_history(job_id), 0, -1)  # type: ignore[no-any-return,misc]

    async def list_jobs(
        self,
        *,
        status: Status | None = None,
        function: str | None = None,
        limit: int = 20,
        before: int | None = None,
        tag: str | None = None,
    ) -> tuple[list[bytes], int | None]:
        """Snapshots newest first, and the cursor of the next page (``None`` at the end);
        with ``tag``, only the jobs created with that tag (read from the tag's own index).

        Each call looks at no more than ``max(5 * limit, 100)`` jobs of the index, so its cost
        is bounded whatever the filters; a page may then hold fewer than ``limit`` jobs and
        still have a next one.
        """
        scan = max(5 * limit, 100)
        top = f"({before}" if before is not None else "+inf"
        index = keys.JOBS if tag is None else keys.tagged(tag)
        entries = await self._redis.zrevrangebyscore(
            index, top, "-inf", start=0, num=scan, withscores=True
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in entries:
                pipe.hmget(
                    keys.job_snapshot(msgspec.json.decode(member)),
                    ["status", "function", "data", "tags"],
                )
            rows = await pipe.execute()
        wanted_status = _encode(status) if status is not None else None
        wanted_function = _encode(function) if function is not None else None
        found: list[bytes] = []
        stale = []
        cursor: int | None = None
        for (member, score), (job_status, job_function, data, tags) in zip(
            entries, rows, strict=True
        ):
            cursor = int(score)
            if data is None or (tag is not None and not _has_tag(tags, tag)):
                # Expired, or deleted and its id since taken by a job without the tag
                # (another user's): prune it from the index.
                stale.append(member)
            elif wanted_status in (None, job_status) and wanted_function in (None, job_function):
                found.append(data)
                if len(found) == limit:
                    break
        if stale:
            await self._redis.zrem(index, *stale)
        more = len(found) == limit or len(entries) == scan
        return found, cursor if more and entries else None

    async def tag_changes(
        self, tag: str, *, after: int | None, limit: int
    ) -> list[tuple[int, bytes]] | None:
        """``(version, snapshot JSON)`` of the tag's jobs changed after version ``after``
        (all that the tag's change log keeps, up to ``limit``), or with ``after`` None those
        of the ``limit`` changed last; oldest change first, jobs since expired left out.
        None when ``after`` is further back than the log keeps (its oldest entries were
        dropped, and with them perhaps changes after ``after``)."""
        index = keys.tag_changes(tag)
        if after is None:
            entries = (await self._redis.zrevrange(index, 0, limit - 1, withscores=True))[::-1]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(index)
                pipe.zrange(index, 0, 0, withscores=True)
                pipe.zrangebyscore(index, f"({after}", "+inf", start=0, num=limit, withscores=True)
                kept, oldest, entries = await pipe.execute()
            if kept >= TAG_CHANGES_KEPT and oldest and int(oldest[0][1]) > after:
                return None
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in entries:
                pipe.hmget(keys.job_snapshot(msgspec.json.decode(member)), ["data", "tags"])
            found = await pipe.execute()
        pairs = zip(entries, found, strict=True)
        # A job since expired is left out, and so is one whose id a job without the tag
        # (another user's) has taken since.
        return [
            (int(score), data)
            for (_, score), (data, tags) in pairs
            if data is not None and _has_tag(tags, tag)
        ]

    async def newest(self, limit: int = 100) -> list[bytes]:
        """The snapshots of the newest jobs, oldest of them first."""
        jobs, _ = await self.list_jobs(limit=limit)
        return jobs[::-1]

    async def active_jobs(self, *, created_before_ms: int, offset: int, count: int) -> list[str]:
        """A page of the jobs not yet ended that were created before ``created_before_ms``
        (Unix ms), oldest first: the reconciler's walk."""
        members = await self._redis.zrangebyscore(
            keys.ACTIVE, "-inf", created_before_ms, start=offset, num=count
        )
        return [msgspec.json.decode(m) for m in members]

    async def counts(self) -> dict[str, int]:
        """How many jobs have each status that is not final, now."""
        counts = await self._redis.hgetall(keys.COUNTS)  # type: ignore[misc]
        found = {msgspec.json.decode(k): int(v) for k, v in counts.items()}
        return {status.value: max(0, found.get(status.value, 0))
                for status in Status if status not in TERMINAL}  # fmt: skip

    async def ended_per_minute(self, minutes: int) -> list[tuple[int, dict[str, int]]]:
        """Jobs that ended in each of the last ``minutes`` minutes (oldest first), by final
        status: ``[(minute as Unix time // 60, {"finished": 3, "failed": 1}), …]``."""
        now = int(time.time()) // 60
        span = list(range(now - minutes + 1, now + 1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for minute in span:
                pipe.hgetall(keys.ended_in(minute))
            rows = await pipe.execute()
        return [
            (minute, {msgspec.json.decode(k): int(v) for k, v in row.items()})
            for minute, row in zip(span, rows, strict=True)
        ]

    async def output(
        self, job_id: str, *, after: str = "0", limit: int = 100
    ) -> list[tuple[str, bytes]]:
        """Up to ``limit`` entries of the job's output after stream id ``after``, oldest
        first, as ``(id, JSON)``."""
        start = _after(after)
        if start is None:
            return []
        entries = await self._redis.xrange(keys.job_output(job_id), start, "+", count=limit)
        return [(entry_id.decode(), fields[b"e"]) for entry_id, fields in entries]

    async def output_many(
        self, places: Sequence[tuple[str, str]], limit: int
    ) -> list[list[tuple[str, bytes]]]:
        """``output`` for several ``(job id, after)`` places, in one round trip."""
        starts = [_after(after) for _, after in places]
        async with self._redis.pipeline(transaction=False) as pipe:
            for (job_id, _), start in zip(places, starts, strict=True):
                if start is not None:
                    pipe.xrange(keys.job_output(job_id), start, "+", count=limit)
            read = iter(await pipe.execute())
        pages = [[] if start is None else next(read) for start in starts]
        return [[(entry_id.decode(), fields[b"e"]) for entry_id, fields in page] for page in pages]


def _after(entry_id: str) -> str | None:
    """The XRANGE start for entries after ``entry_id``; None where none can follow (the last
    id a stream can hold, where Redis refuses an exclusive start)."""
    if entry_id in ("", "0"):
        return "-"
    return None if entry_key(entry_id) == LAST_ENTRY else f"({entry_id}"
