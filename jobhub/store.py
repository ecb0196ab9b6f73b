"""Redis: every snapshot write is one atomic step, and every read of job state is here.

A write is a compare-and-set in one Lua script: it checks that the stored ``seq`` is the one
the writer built on and that the job is not terminal, then stores the new snapshot, sets its
TTL and publishes the same bytes on the job's channel. Because the store and the publish are
one script, no reader can see a snapshot that was not published or the other way round, and
because a writer must name the ``seq`` it built on, two writers (a worker reporting progress,
the API cancelling) can never interleave into a lost update: the loser re-reads and re-applies.

    store = Store(redis, result_ttl_seconds=86400)
    created, data = await store.create(Snapshot.queued(job_id, "demo.count"))
    snap = await store.update(job_id, lambda s: replace(s, status=Status.STARTED))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import msgspec
from redis.asyncio import Redis

from . import keys
from .exceptions import JobIsFinal, JobNotFound
from .snapshot import TERMINAL, Snapshot, decode, encode, utcnow

__all__ = ["Store"]

# The `type: ignore[misc]` below: redis-py types each command as one union of its sync and
# async results, which mypy cannot await.

_TERMINAL_LUA = "{" + ", ".join(f"[{s.value!r}] = true" for s in sorted(TERMINAL)) + "}"

# KEYS[1] snapshot hash. ARGV: channel, data, status.
_CREATE = """
local existing = redis.call('HGET', KEYS[1], 'data')
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], 'seq', 1, 'status', ARGV[3], 'data', ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {1}
"""

# KEYS[1] snapshot hash. ARGV: channel, data, status, ttl seconds, expected seq.
_UPDATE = f"""
local terminal = {_TERMINAL_LUA}
local current = redis.call('HMGET', KEYS[1], 'seq', 'status', 'data')
if not current[1] then return {{'missing'}} end
if terminal[current[2]] then return {{'final', current[3]}} end
if current[1] ~= ARGV[5] then return {{'conflict', current[3]}} end
redis.call('HSET', KEYS[1], 'seq', tonumber(ARGV[5]) + 1, 'status', ARGV[3], 'data', ARGV[2])
if terminal[ARGV[3]] then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {{'ok'}}
"""

# A compare-and-set loop ends as soon as one writer wins; this only guards against a bug
# turning it into a spin.
_MAX_ATTEMPTS = 100


class Store:
    """Snapshots and the function registry in Redis, over a ``redis.asyncio`` client."""

    def __init__(self, redis: Redis, *, result_ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = result_ttl_seconds
        self._create = redis.register_script(_CREATE)
        self._update = redis.register_script(_UPDATE)

    async def create(self, snapshot: Snapshot) -> tuple[bool, bytes]:
        """Store a job's first snapshot unless the job exists.

        Returns ``(True, data)`` if it was created, ``(False, existing data)`` if not: a
        client-chosen job id is an idempotency key.
        """
        data = encode(snapshot)
        reply = await self._create(
            keys=[keys.job_snapshot(snapshot.job_id)],
            args=[keys.job_channel(snapshot.job_id), data, snapshot.status.value],
        )
        return (True, data) if reply[0] == 1 else (False, cast(bytes, reply[1]))

    async def update(
        self,
        job_id: str,
        change: Callable[[Snapshot], Snapshot],
        current: Snapshot | None = None,
    ) -> Snapshot:
        """Apply ``change`` to the job's latest snapshot and store it with the next ``seq``.

        ``current`` is the snapshot the caller believes is latest (it saves a read); when
        another writer got there first, ``change`` is applied again to the newer one.
        Raises ``JobIsFinal`` if the job is terminal and ``JobNotFound`` if it does not exist.
        """
        for _ in range(_MAX_ATTEMPTS):
            if current is None:
                current = await self.read(job_id)
                if current is None:
                    raise JobNotFound(job_id)
            if current.is_terminal:
                raise JobIsFinal(job_id, current.status.value)
            new = msgspec.structs.replace(change(current), seq=current.seq + 1, updated_at=utcnow())
            data = encode(new)
            reply = await self._update(
                keys=[keys.job_snapshot(job_id)],
                args=[keys.job_channel(job_id), data, new.status.value, self._ttl, current.seq],
            )
            outcome = reply[0]
            if outcome == b"ok":
                return new
            if outcome == b"missing":
                raise JobNotFound(job_id)
            current = decode(reply[1])  # 'final' or 'conflict': decide again on the newer state
        raise RuntimeError(f"gave up writing job {job_id!r} after {_MAX_ATTEMPTS} conflicts")

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

    async def announce_functions(self, names: list[str]) -> None:
        """Record that a worker runs these functions, so the web app accepts them."""
        if names:
            now = str(time.time())
            await self._redis.hset(keys.FUNCTIONS, mapping=dict.fromkeys(names, now))  # type: ignore[misc]

    async def is_known_function(self, name: str) -> bool:
        return bool(await self._redis.hexists(keys.FUNCTIONS, name))  # type: ignore[misc]

    async def known_functions(self) -> list[str]:
        names = await self._redis.hkeys(keys.FUNCTIONS)  # type: ignore[misc]
        return sorted(n.decode() for n in names)
