"""Redis: a batch's state, written only by the scripts of jobhub/store/lua/batches.py (and
by each child's write, which moves its batch in the same step), and read here.

    batches = BatchStore(redis, result_ttl_seconds=86400, history_limit=500)
    data = await batches.create("b1", children, mode="new", sealed=True, now=utcnow())
    data = await batches.get("b1")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import msgspec
from redis.asyncio import Redis

from jobhub.core import keys
from jobhub.core.exceptions import BatchConflict, BatchNotFound, QueueHoldsId
from jobhub.core.snapshot import Snapshot, encode
from jobhub.store.lua import BATCH_CREATE, BATCH_DELETE, BATCH_MARK, BATCH_READ, FIELDS
from jobhub.store.store import TOMBSTONE_MARGIN_SECONDS, Enqueue

__all__ = ["BatchStore", "NewChild"]

_encode = msgspec.json.Encoder().encode


class _Child(msgspec.Struct):
    batch_id: str | None = None


_decode_child = msgspec.json.Decoder(_Child).decode


def _of(data: bytes, batch_id: str) -> bool:
    """Whether a job's snapshot JSON says it is a child of ``batch_id``."""
    return _decode_child(data).batch_id == batch_id


@dataclass(frozen=True, slots=True)
class NewChild:
    """One child to create: its first snapshot, the fields kept beside it (its arguments),
    its queue entry, and the child it retries, if any."""

    snapshot: Snapshot
    hidden: dict[str, bytes]
    enqueue: Enqueue
    replaces: str | None = None


class BatchStore:
    """Batches in Redis, over a ``redis.asyncio`` client."""

    def __init__(self, redis: Redis, *, result_ttl_seconds: int, history_limit: int = 500) -> None:
        self._redis = redis
        self._ttl = result_ttl_seconds
        self._history = history_limit
        self._create = redis.register_script(BATCH_CREATE)
        self._mark = redis.register_script(BATCH_MARK)
        self._read = redis.register_script(BATCH_READ)
        self._delete = redis.register_script(BATCH_DELETE)

    async def create(
        self,
        batch_id: str,
        children: Sequence[NewChild],
        *,
        mode: str,
        sealed: bool,
        now: str,
        callback_url: str | None = None,
        read_at: int | None = None,
    ) -> bytes:
        """Create the children (all or none), the batch too with ``mode`` ``new``, add them
        to an open batch (``add``) or put them in the place of the children they retry
        (``retry``); every child goes into its queue in the same step. Returns the batch's
        snapshot JSON. Raises ``BatchConflict`` (the batch id is used, the batch is sealed
        or gone, a child id is used), ``QueueHoldsId`` or ``BatchNotFound``. ``read_at``,
        for a retry: the batch's seq when its caller began to read the children to retry;
        ``BatchConflict`` if the batch was canceled since."""
        queue = children[0].enqueue.queue if children else "-"
        batch_keys = [
            keys.batch(batch_id), keys.batch_children(batch_id), keys.batch_changes(batch_id),
            keys.BATCHES, keys.JOBS, keys.ACTIVE, keys.COUNTS, keys.TAGS_ACTIVE, queue,
        ]  # fmt: skip
        callback = b"" if callback_url is None else _encode(callback_url)
        sealed_flag = "1" if sealed else "0"
        if read_at is not None:
            mode = f"{mode} {read_at}"
        args: list[bytes | str | int] = [
            batch_id, mode, sealed_flag, self._history, now, callback, self._ttl,
            keys.batch_channel(batch_id),
        ]  # fmt: skip
        for child in children:
            snap, enqueue = child.snapshot, child.enqueue
            job_id = snap.job_id
            old = child.replaces
            batch_keys += [
                keys.job_snapshot(job_id), keys.job_history(job_id), keys.job_deleted(job_id),
                enqueue.job_key, *enqueue.held_keys[:1],
                keys.job_snapshot(old if old is not None else job_id),
                *(keys.tagged(tag) for tag in snap.tags),
            ]  # fmt: skip
            fields = [
                part for name in FIELDS for part in (name.encode(), _encode(getattr(snap, name)))
            ]
            for name, value in child.hidden.items():
                fields += [name.encode(), value]
            meta = f"{enqueue.score} {enqueue.ttl_ms} {len(snap.tags)} {snap.weight}"
            args += [b"\0".join(fields), encode(snap), enqueue.payload, meta, old or "",
                     keys.job_channel(job_id)]  # fmt: skip
        reply = await self._create(keys=batch_keys, args=args)
        outcome = int(reply[0])
        if outcome == 1:
            return cast(bytes, reply[1])
        if outcome == 0:
            job = reply[1].decode().removeprefix(keys.job_snapshot(""))
            why = reply[2].decode()
            if why == "queued":
                raise QueueHoldsId(job)
            if why == "retried":
                raise BatchConflict(f"job {job!r} was retried already, or is no longer here")
            raise BatchConflict(f"job id {job!r} is already used")
        why = reply[1].decode()
        if why == "changed":
            raise BatchConflict(f"batch {batch_id!r} changed while it was read: try again")
        if mode == "new":
            raise BatchConflict(f"batch id {batch_id!r} is already used (the batch is {why})")
        if why == "":
            raise BatchNotFound(batch_id)
        if why == "canceling":
            raise BatchConflict(f"batch {batch_id!r} is being canceled: retry it once it has ended")
        if why == "sealed":
            raise BatchConflict(f"batch {batch_id!r} is sealed: it takes no more jobs")
        raise BatchConflict(f"batch {batch_id!r} has ended ({why}): it takes no more jobs")

    async def mark(self, batch_id: str, operation: str, *, now: str) -> tuple[bytes, bool]:
        """``seal`` or ``cancel`` the batch; returns its snapshot and whether it changed
        (not, when it was so already or has ended). Raises ``BatchNotFound``."""
        batch_keys = [
            keys.batch(batch_id),
            keys.batch_children(batch_id),
            keys.batch_changes(batch_id),
        ]
        args: list[str | int] = [operation, now, self._ttl, keys.batch_channel(batch_id)]
        outcome, data = await self._mark(keys=batch_keys, args=args)
        if int(outcome) == 0:
            raise BatchNotFound(batch_id)
        return cast(bytes, data), int(outcome) == 1

    async def retry_point(self, batch_id: str) -> tuple[int, bool] | None:
        """The batch's seq and whether a cancel of it is under way, read together: where a
        retry begins to read its children. None where there is no such batch."""
        fields = ["seq", "status", "cancel"]
        seq, status, cancel = await self._redis.hmget(keys.batch(batch_id), fields)  # type: ignore[misc]
        if status is None:
            return None
        return int(seq), status == b"active" and cancel == b"1"

    async def get(self, batch_id: str) -> bytes | None:
        """The batch's snapshot JSON: one read, whatever its size."""
        data = await self._redis.hget(keys.batch(batch_id), "data")  # type: ignore[misc]
        return cast(bytes | None, data)

    async def changes(
        self, batch_id: str, *, after: int | None, limit: int
    ) -> tuple[bytes | None, list[tuple[int, bytes]]]:
        """The batch's snapshot and ``(seq, snapshot JSON)`` of its children changed after
        the batch's ``seq`` ``after`` (None: the ``limit`` changed last), oldest change
        first; read in one step."""
        args = ["" if after is None else after, limit]
        reply = await self._read(
            keys=[keys.batch(batch_id), keys.batch_changes(batch_id)], args=args
        )
        found = [(int(reply[i]), cast(bytes, reply[i + 1])) for i in range(1, len(reply), 2)]
        return reply[0] or None, [(seq, data) for seq, data in found if _of(data, batch_id)]

    async def snapshots(self, batch_id: str, job_ids: Sequence[str]) -> list[bytes | None]:
        """The snapshot JSON of each child, None for one that is gone. A batch names its
        children by id, and a deleted or expired child's id is free again: a job started
        under it since (another user's) is no child of the batch, and reads as gone."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job_snapshot(job_id), "data")
            found: list[bytes | None] = await pipe.execute()
        return [data if data is not None and _of(data, batch_id) else None for data in found]

    async def children(self, batch_id: str, *, after: int, limit: int) -> list[tuple[int, str]]:
        """``(place, job id)`` of the children after place ``after``, in their order."""
        found = await self._redis.zrangebyscore(
            keys.batch_children(batch_id), f"({after}", "+inf", start=0, num=limit, withscores=True
        )
        return [(int(score), msgspec.json.decode(member)) for member, score in found]

    async def list(self, *, before: int | None, limit: int) -> tuple[list[bytes], int | None]:
        """The newest batches' snapshots (created before ``before``, µs), and the cursor of
        the next page (None after the last); expired batches are pruned on the way."""
        high = "+inf" if before is None else f"({before}"
        found = await self._redis.zrevrangebyscore(
            keys.BATCHES, high, "-inf", start=0, num=limit, withscores=True
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in found:
                pipe.hget(keys.batch(member.decode()), "data")
            datas = await pipe.execute()
        gone = [member for (member, _), data in zip(found, datas, strict=True) if data is None]
        if gone:
            await self._redis.zrem(keys.BATCHES, *gone)
        page = [data for data in datas if data is not None]
        cursor = int(found[-1][1]) if len(found) == limit else None
        return page, cursor

    async def delete(self, batch_id: str, result_key: Callable[[str], str]) -> str | None:
        """Delete an ended batch and its children (``result_key``: the queue's result key
        of a child, deleted with it); returns ``ok``, the status of a batch not ended,
        ``changed`` when its children changed meanwhile, or None when there is no batch."""
        children = await self._redis.zrange(keys.batch_children(batch_id), 0, -1)
        job_ids = [msgspec.json.decode(member) for member in children]
        batch_keys = [
            keys.batch(batch_id), keys.batch_children(batch_id), keys.batch_changes(batch_id),
            keys.BATCHES, keys.JOBS, keys.ACTIVE,
        ]  # fmt: skip
        for job_id in job_ids:
            batch_keys += [
                keys.job_snapshot(job_id), keys.job_history(job_id), keys.job_output(job_id),
                keys.job_deliveries(job_id), keys.job_deleted(job_id), result_key(job_id),
            ]  # fmt: skip
        args: list[str | int] = [batch_id, len(job_ids), self._ttl + TOMBSTONE_MARGIN_SECONDS]
        outcome = await self._delete(keys=batch_keys, args=args)
        return None if outcome is None else cast(bytes, outcome).decode()
