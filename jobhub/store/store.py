"""Redis: every snapshot write is one atomic step, and every read of job state is here.

A job is a hash holding each snapshot field as a ready-encoded JSON fragment, its ``seq``,
and ``data``: the whole snapshot JSON, as served and published. A write is a *patch* (the
fields that change); one Lua script checks the job is not terminal, sets the fields, bumps
``seq``, assembles ``data`` from the fragments, sets the TTL of a terminal job and publishes
``data`` on the job's channel. So a write needs no read first, two writers never conflict
(each patch applies to whatever is newest), and no reader ever sees a stored snapshot that
was not published or the other way round.

    store = Store(redis, result_ttl_seconds=86400)
    created, data = await store.create(Snapshot.queued(job_id, "demo.count"))
    data = await store.write(job_id, {"status": Status.RUNNING, "percent": 40.0})
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from jobhub.core import keys
from jobhub.core.exceptions import (
    InvalidRequest,
    JobhubError,
    JobIsFinal,
    JobNotFound,
    OutputTooLarge,
    QueueHoldsId,
    RunSuperseded,
    WrongStatus,
)
from jobhub.core.positions import LAST_ENTRY, entry_key
from jobhub.core.snapshot import TERMINAL, Snapshot, Status, decode, utcnow
from jobhub.store.lua import CREATE, DELETE, FIELDS, FLUSH, NEWER_RUN, RELEASE_MARK, WRITE

__all__ = ["PATCHABLE", "TOMBSTONE_MARGIN_SECONDS", "Enqueue", "PreparedWrite", "Store"]

# The `type: ignore[misc]` below: redis-py types each command as one union of its sync and
# async results, which mypy cannot await.

_FIELDS = FIELDS
PATCHABLE = frozenset(_FIELDS) - {"job_id", "seq", "created_at", "updated_at"}
"""Snapshot fields a write may set; ``seq`` and ``updated_at`` are set by every write."""

_encode = msgspec.json.Encoder().encode

TOMBSTONE_MARGIN_SECONDS = 3600
"""How much longer than a result a deleted job's tombstone lives: a run still ending when
its job was deleted (a slow ``finally``) writes the queue's result later, kept a result's
TTL from then."""


# The fields of a queued snapshot that do not depend on the job or the time, encoded once.
_QUEUED_REST = b"\0".join(
    b"%s\0%s" % (name.encode(), _encode(getattr(Snapshot.queued("", ""), name)))
    for name in _FIELDS
    if name not in {"job_id", "function", "seq", "created_at", "updated_at"}
)


@dataclass(frozen=True, slots=True)
class Enqueue:
    """What putting a job in its queue writes, beside its first snapshot: the queue's own
    record of the job (its key, payload and TTL), its score in the queue, and the keys whose
    existence means the queue still holds the id. Built by jobhub/lifecycle/lifecycle.py, the one
    module that knows the queue's layout."""

    job_key: str
    payload: bytes
    ttl_ms: int
    queue: str
    score: int
    held_keys: tuple[str, ...]


class PreparedWrite:
    """A write encoded and ready to send (see ``Store.prepare``)."""

    __slots__ = ("init", "job_id", "owner", "patch", "run")

    def __init__(
        self, job_id: str, patch: bytes, init: bytes, owner: str | None, run: str | None
    ) -> None:
        self.job_id = job_id
        self.patch = patch
        self.init = init
        self.owner = owner
        self.run = run


class Store:
    """Snapshots and the function registry in Redis, over a ``redis.asyncio`` client."""

    def __init__(
        self,
        redis: Redis,
        *,
        result_ttl_seconds: int,
        history_limit: int = 500,
        output_limit: int = 10_000,
        output_max_bytes: int = 1 << 20,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        self._redis = redis
        self._ttl = result_ttl_seconds
        self._history = history_limit
        self._output = output_limit
        self._output_max = output_max_bytes
        self._replicas = wait_replicas
        self._wait_ms = wait_timeout_ms
        self._create = redis.register_script(CREATE)
        self._delete = redis.register_script(DELETE)
        self._newer_run = redis.register_script(NEWER_RUN)
        self._release_mark = redis.register_script(RELEASE_MARK)
        self._write_sha = redis.register_script(WRITE).sha

    async def create(
        self,
        snapshot: Snapshot,
        *,
        hidden: Mapping[str, bytes] | None = None,
        enqueue: Enqueue | None = None,
        unless_deleted: bool = False,
    ) -> tuple[bool, bytes]:
        """Store and publish a job's first snapshot unless the job exists, and with
        ``enqueue`` put it in its queue in the same atomic step.

        Returns ``(True, data)`` if it was created, ``(False, existing data)`` if not: a
        client-chosen job id is an idempotency key. ``hidden`` are fields kept beside the
        snapshot but not part of it (a webhook's URL). Raises ``QueueHoldsId`` if the queue
        still holds a job under this id (nothing is written then).

        A job created under the id of a deleted one clears its tombstone (and what the queue
        wrote for the deleted job after the delete); with ``unless_deleted`` the tombstone
        refuses the create instead, which returns ``(False, b"")``.
        """
        job_id = snapshot.job_id
        job_keys = [keys.job_snapshot(job_id), keys.job_history(job_id), keys.job_deleted(job_id)]
        args: list[Any] = [keys.job_channel(job_id), self._history, "", "", "", "",
                           "1" if unless_deleted else "0"]  # fmt: skip
        if enqueue is not None:
            job_keys += [enqueue.job_key, enqueue.queue, *enqueue.held_keys]
            args[2:6] = [enqueue.payload, enqueue.ttl_ms, enqueue.score, job_id]
        for name in _FIELDS:
            args += [name, _encode(getattr(snapshot, name))]
        for name, value in (hidden or {}).items():
            args += [name, value]
        if self._replicas:
            # Acknowledged only once a replica has it: a failover cannot lose an accepted job.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._create.sha, len(job_keys), *job_keys, *args)
                pipe.execute_command("WAIT", self._replicas, self._wait_ms)
                replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], NoScriptError):
                created, data = await self._create(keys=job_keys, args=args)
            elif isinstance(replies[0], Exception):
                raise replies[0]
            else:
                created, data = replies[0]
        else:
            created, data = await self._create(keys=job_keys, args=args)
        if created == 2:
            raise QueueHoldsId(job_id)
        if created == 3:
            return False, b""
        return created == 1, cast(bytes, data)

    async def write(
        self,
        job_id: str,
        patch: Mapping[str, Any],
        *,
        only_from: Collection[Status] = (),
        run: str | None = None,
        hidden: Mapping[str, str] | None = None,
        once: tuple[str, int] | None = None,
    ) -> bytes:
        """Set the fields in ``patch`` as the job's next snapshot; returns its JSON.

        Raises ``JobIsFinal`` if the job is terminal (nothing is stored), ``JobNotFound``
        if it does not exist, ``WrongStatus`` if ``only_from`` is given and the job's status
        is not among it, ``RunSuperseded`` if ``run`` is given and is not the job's newest
        run, and ``TypeError``/``ValueError`` if a value cannot be encoded as JSON.
        """
        prepared = self.prepare(
            job_id, patch, only_from=only_from, run=run, hidden=hidden, once=once
        )
        [result] = await self.write_many([prepared])
        if isinstance(result, JobhubError):
            raise result
        return result

    def prepare(
        self,
        job_id: str,
        patch: Mapping[str, Any],
        *,
        function: str | None = None,
        only_from: Collection[Status] = (),
        owner: str | None = None,
        run: str | None = None,
        hidden: Mapping[str, str] | None = None,
        once: tuple[str, int] | None = None,
    ) -> PreparedWrite:
        """Encode a write now (a bad value raises here), to send with ``write_many``.

        With ``function``, a job that does not exist is created as a queued job of that
        function first (a job enqueued with ARQ directly still gets snapshots). With
        ``only_from``, the write applies only if the job's status is one of those, else it
        meets ``WrongStatus``. With ``run``, it applies only while the job's hidden ``run``
        field holds that token, else it meets ``RunSuperseded``. ``owner`` is the id of the
        worker writing, which keeps the job among its jobs while it is at work. ``hidden``
        fields are stored beside the snapshot, not in it (``run``, ``worker``). ``once``, a
        run's token and the number of this write among the run's (growing), makes the write
        apply once however often it is sent: one already applied answers the snapshot as it
        is now (see ``scripts.WRITE``).
        """
        unknown = patch.keys() - PATCHABLE
        if unknown:
            raise InvalidRequest(f"not patchable snapshot fields: {sorted(unknown)}")
        now = _encode(utcnow())
        parts = [b"updated_at", now]
        if only_from:
            parts[:0] = [b"?from", b"|".join(_encode(status) for status in only_from)]
        if run is not None:
            parts[:0] = [b"?run", run.encode()]
        if once is not None:
            parts[:0] = _once(once)
        for name, value in patch.items():
            parts += [name.encode(), _encode(value)]
        for name, text in (hidden or {}).items():
            if not text or "\0" in text:
                # The script splits a patch at NULs: an empty or NUL-holding value would
                # shift every field after it.
                raise ValueError(f"hidden field {name!r} must be non-empty text without NUL")
            parts += [name.encode(), text.encode()]
        init = b""
        if function is not None:
            init = b"\0".join(
                [b"job_id", _encode(job_id), b"function", _encode(function), _QUEUED_REST,
                 b"created_at", now, b"updated_at", now]
            )  # fmt: skip
        return PreparedWrite(job_id, b"\0".join(parts), init, owner, run)

    def prepare_entry(
        self,
        job_id: str,
        entry: Mapping[str, Any],
        *,
        run: str | None,
        owner: str | None,
        once: tuple[str, int] | None = None,
    ) -> PreparedWrite:
        """Encode an output entry (a log line or a chunk) to append, as for ``prepare``; its
        result in ``write_many`` is the entry's stream id.

        Raises ``OutputTooLarge`` for an entry whose JSON is over ``output_max_bytes``: every
        entry is also published, and a reader's Redis connection is cut once its pub/sub
        buffer passes 32 MB (Redis's default ``client-output-buffer-limit``), so a few huge
        entries would drop every web process's subscription at once.
        """
        encoded = _encode(entry)
        if len(encoded) > self._output_max:
            raise OutputTooLarge(
                f"an output entry of {len(encoded):,} bytes of JSON is over the "
                f"{self._output_max:,} allowed (JOBHUB_OUTPUT_MAX_BYTES); nothing was stored"
            )
        parts = [b"!entry", encoded]
        if run is not None:
            parts[:0] = [b"?run", run.encode()]
        if once is not None:
            parts[:0] = _once(once)
        return PreparedWrite(job_id, b"\0".join(parts), b"", owner, run)

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

    async def write_many(self, writes: Sequence[PreparedWrite]) -> list[bytes | JobhubError]:
        """Send prepared writes in one round trip, in order; returns, per write, the
        snapshot JSON or the ``JobIsFinal``/``JobNotFound`` it met.

        Consecutive writes to one job travel in one script call; each is still its own
        snapshot, stored and published in turn.
        """
        groups: list[list[PreparedWrite]] = []
        for write in writes:
            if groups and groups[-1][0].job_id == write.job_id:
                groups[-1].append(write)
            else:
                groups.append([write])
        replies = await self._send(groups)
        missed = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missed:
            # Redis restarted or flushed its scripts. A call that met NOSCRIPT did nothing,
            # so exactly those are sent again, still in their order.
            await self._redis.script_load(WRITE)
            again = await self._send([groups[i] for i in missed])
            for i, reply in zip(missed, again, strict=True):
                replies[i] = reply
        results: list[bytes | JobhubError] = []
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            outcome, status, applied = reply[0], reply[1], reply[2:]
            results += applied
            for write in group[len(applied) :]:
                if outcome == b"missing":
                    results.append(JobNotFound(write.job_id))
                elif outcome == b"refused":
                    results.append(WrongStatus(write.job_id, msgspec.json.decode(status)))
                elif outcome == b"fenced":
                    results.append(RunSuperseded(write.job_id, write.run or ""))
                else:
                    results.append(JobIsFinal(write.job_id, msgspec.json.decode(status)))
        return results

    async def _send(self, groups: list[list[PreparedWrite]]) -> list[Any]:
        # Waiting for replicas: every snapshot and entry of this round trip is published only
        # once WAIT says a replica has it (scripts.py), in the same round trip.
        outbox = keys.outbox(secrets.token_hex(8)) if self._replicas else keys.outbox("-")
        stash = "1" if self._replicas else "0"

        def args(group: list[PreparedWrite]) -> list[Any]:
            job_id = group[0].job_id
            init = next((w.init for w in group if w.init), b"")
            patches = [w.patch for w in group]
            job_keys = [
                keys.job_snapshot(job_id), keys.job_history(job_id), keys.job_output(job_id),
                outbox, keys.job_deleted(job_id),
            ]  # fmt: skip
            owner = group[0].owner
            if owner is not None:
                job_keys.append(keys.worker_jobs(owner))
            channel = keys.job_channel(job_id)
            return [
                self._write_sha,
                len(job_keys),
                *job_keys,
                channel,
                self._ttl,
                self._history,
                self._output,
                init,
                stash,
                *patches,
            ]

        if len(groups) == 1 and not self._replicas:
            try:
                return [await self._redis.execute_command("EVALSHA", *args(groups[0]))]  # type: ignore[no-untyped-call]
            except NoScriptError as exc:
                return [exc]
        # Plain EVALSHA rather than Script objects: a pipeline holding Script objects asks
        # Redis whether they exist before every execution, a round trip of its own.
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in groups:
                pipe.execute_command("EVALSHA", *args(group))
            if self._replicas:
                pipe.execute_command("WAIT", self._replicas, self._wait_ms)
                pipe.eval(FLUSH, 1, outbox)
            replies = await pipe.execute(raise_on_error=False)
        return replies[: len(groups)]

    async def get(self, job_id: str) -> bytes | None:
        """The latest snapshot's JSON, as stored and published."""
        data = await self._redis.hget(keys.job_snapshot(job_id), "data")  # type: ignore[misc]
        return cast(bytes | None, data)

    async def get_many(self, job_ids: Sequence[str]) -> list[bytes | None]:
        """The latest snapshot JSON of each job, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job_snapshot(job_id), "data")
            return await pipe.execute()

    async def list_jobs(
        self,
        *,
        status: Status | None = None,
        function: str | None = None,
        limit: int = 20,
        before: int | None = None,
    ) -> tuple[list[bytes], int | None]:
        """Snapshots newest first, and the cursor of the next page (``None`` at the end).

        Each call looks at no more than ``max(5 * limit, 100)`` jobs of the index, so its cost
        is bounded whatever the filters; a page may then hold fewer than ``limit`` jobs and
        still have a next one.
        """
        scan = max(5 * limit, 100)
        top = f"({before}" if before is not None else "+inf"
        entries = await self._redis.zrevrangebyscore(
            keys.JOBS, top, "-inf", start=0, num=scan, withscores=True
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, _ in entries:
                pipe.hmget(
                    keys.job_snapshot(msgspec.json.decode(member)), ["status", "function", "data"]
                )
            rows = await pipe.execute()
        wanted_status = _encode(status) if status is not None else None
        wanted_function = _encode(function) if function is not None else None
        found: list[bytes] = []
        stale = []
        cursor: int | None = None
        for (member, score), (job_status, job_function, data) in zip(entries, rows, strict=True):
            cursor = int(score)
            if data is None:
                stale.append(member)  # expired: prune it from the index
            elif wanted_status in (None, job_status) and wanted_function in (None, job_function):
                found.append(data)
                if len(found) == limit:
                    break
        if stale:
            await self._redis.zrem(keys.JOBS, *stale)
        more = len(found) == limit or len(entries) == scan
        return found, cursor if more and entries else None

    async def hidden(self, job_id: str, *names: str) -> list[str | None]:
        """Fields kept beside a job's snapshot and not in it (``run``, ``worker``, …)."""
        values = await self._redis.hmget(keys.job_snapshot(job_id), list(names))  # type: ignore[misc]
        return [None if v is None else v.decode() for v in values]

    async def exist_many(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job has a snapshot, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(keys.job_snapshot(job_id))
            return [bool(n) for n in await pipe.execute()]

    async def active_jobs(self, *, created_before_ms: int, offset: int, count: int) -> list[str]:
        """A page of the jobs not yet ended that were created before ``created_before_ms``
        (Unix ms), oldest first: the reconciler's walk."""
        members = await self._redis.zrangebyscore(
            keys.ACTIVE, "-inf", created_before_ms, start=offset, num=count
        )
        return [msgspec.json.decode(m) for m in members]

    async def delete(self, job_id: str, *, also: Sequence[str] = ()) -> Status | None:
        """Delete an ended job and everything kept of it (and the keys in ``also``); returns
        its status (a job not ended is left as it is), or None if there is no such job."""
        job_keys = [
            keys.job_deleted(job_id),
            keys.job_snapshot(job_id),
            keys.job_history(job_id),
            keys.job_output(job_id),
            keys.job_deliveries(job_id),
            *also,
        ]
        status = await self._delete(keys=job_keys, args=[self._ttl + TOMBSTONE_MARGIN_SECONDS])
        return None if status is None else Status(msgspec.json.decode(status))

    async def deleted_many(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job was deleted lately (its tombstone lives), in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(keys.job_deleted(job_id))
            return [bool(n) for n in await pipe.execute()]

    async def newer_run(
        self, job_id: str, step: str, stale: str, arq: Sequence[str], argv: Sequence[Any]
    ) -> bool:
        """Keep a newer run's queue records safe from the queue's end of the superseded run
        ``stale``: ``step`` is ``park`` (before that end) or ``keep`` (after it); ``arq`` the
        queue's in-progress key, job key and queue; ``argv`` the token of no run, the job's
        id in the queue and the step's amount. See ``scripts.NEWER_RUN``."""
        done = await self._newer_run(
            keys=[keys.job_snapshot(job_id), *arq], args=[step, stale, *argv]
        )
        return bool(done)

    async def release_mark(self, job_id: str, mark: str, seq: int) -> bool:
        """Delete the queue's in-progress key ``mark`` of a job still queued at ``seq``. See
        ``scripts.RELEASE_MARK``."""
        done = await self._release_mark(keys=[keys.job_snapshot(job_id), mark], args=[seq])
        return bool(done)

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

    async def forget_active(self, job_ids: Sequence[str]) -> None:
        await self._redis.zrem(keys.ACTIVE, *(_encode(job_id) for job_id in job_ids))

    async def newest(self, limit: int = 100) -> list[bytes]:
        """The snapshots of the newest jobs, oldest of them first."""
        jobs, _ = await self.list_jobs(limit=limit)
        return jobs[::-1]

    async def history(self, job_id: str) -> list[bytes]:
        """Every snapshot of the job still in its capped history, in seq order."""
        return await self._redis.lrange(keys.job_history(job_id), 0, -1)  # type: ignore[no-any-return,misc]

    async def read(self, job_id: str) -> Snapshot | None:
        data = await self.get(job_id)
        return None if data is None else decode(data)

    async def get_versioned(self, job_id: str) -> tuple[int, bytes] | None:
        """``(seq, JSON)`` of the latest snapshot, for answers that carry an ETag."""
        seq, data = await self._redis.hmget(keys.job_snapshot(job_id), ["seq", "data"])  # type: ignore[misc]
        return None if data is None else (int(seq), data)


def _once(once: tuple[str, int]) -> list[bytes]:
    token, number = once
    if number < 1:
        raise ValueError(f"a write's number counts from 1, got {number}")
    return [b"?once", token.encode(), str(number).encode()]


def _after(entry_id: str) -> str | None:
    """The XRANGE start for entries after ``entry_id``; None where none can follow (the last
    id a stream can hold, where Redis refuses an exclusive start)."""
    if entry_id in ("", "0"):
        return "-"
    return None if entry_key(entry_id) == LAST_ENTRY else f"({entry_id}"
