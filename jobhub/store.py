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

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from . import keys
from .exceptions import InvalidRequest, JobhubError, JobIsFinal, JobNotFound, WrongStatus
from .snapshot import AT_WORK, TERMINAL, Snapshot, Status, decode, utcnow

__all__ = ["PATCHABLE", "PreparedWrite", "Store"]

# The `type: ignore[misc]` below: redis-py types each command as one union of its sync and
# async results, which mypy cannot await.

_FIELDS = [field.name for field in msgspec.structs.fields(Snapshot)]  # in wire order
PATCHABLE = frozenset(_FIELDS) - {"job_id", "seq", "created_at", "updated_at"}
"""Snapshot fields a write may set; ``seq`` and ``updated_at`` are set by every write."""

_encode = msgspec.json.Encoder().encode


def _lua_set(statuses: Collection[Status]) -> str:
    """A Lua table of statuses as their stored fragments, e.g. {['"finished"'] = true}."""
    return "{" + ", ".join(f"['\"{s.value}\"'] = true" for s in sorted(statuses)) + "}"


_TERMINAL_LUA = _lua_set(TERMINAL)
_AT_WORK_LUA = _lua_set(AT_WORK)

# Lua that assembles the snapshot JSON from the hash, in wire order; generated from the
# Snapshot model so the two can never disagree.
_COMPOSE_LUA = (
    "local v = redis.call('HMGET', KEYS[1], "
    + ", ".join(f"'{name}'" for name in _FIELDS)
    + ")\nlocal data = '{' .. "
    + " .. ',' .. ".join(f"'\"{name}\":' .. v[{i}]" for i, name in enumerate(_FIELDS, 1))
    + " .. '}'\n"
)

# The fields of a queued snapshot that do not depend on the job or the time, encoded once.
_QUEUED_REST = b"\0".join(
    b"%s\0%s" % (name.encode(), _encode(getattr(Snapshot.queued("", ""), name)))
    for name in _FIELDS
    if name not in {"job_id", "function", "seq", "created_at", "updated_at"}
)

_STATUS_INDEX = _FIELDS.index("status") + 1  # of the status fragment in the HMGET above

# Every stored snapshot is also appended to the job's capped history list (KEYS[2]).
_RECORD_LUA = f"""
redis.call('HSET', KEYS[1], 'data', data)
redis.call('RPUSH', KEYS[2], data)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[HISTORY]), -1)
redis.call('PUBLISH', ARGV[1], data)
redis.call('PUBLISH', '{keys.EVENTS}', data)
"""

# A new job joins the listing index, scored by Redis's clock in µs.
_INDEX_LUA = f"""
local now = redis.call('TIME')
redis.call('ZADD', '{keys.JOBS}', now[1] * 1000000 + now[2], redis.call('HGET', KEYS[1], 'job_id'))
"""

# KEYS: job hash, history list. ARGV: channel, history cap, field/fragment pairs (seq too).
_CREATE = f"""
local existing = redis.call('HGET', KEYS[1], 'data')
if existing then return {{0, existing}} end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
{_INDEX_LUA}
{_COMPOSE_LUA}
{_RECORD_LUA.replace("ARGV[HISTORY]", "ARGV[2]")}
return {{1, data}}
"""

# KEYS: job hash, history list. ARGV: channel, ttl seconds, history cap, init, then one or
# more patches.
# A patch is field and fragment pairs joined by NUL: one argument instead of one per field,
# since packing arguments is most of a write's client cost, and JSON escapes every control
# character, so NUL cannot occur inside a fragment. Each patch becomes its own snapshot with
# its own seq and publish; several in one call only save round trips. ``init`` (the fields of
# a queued snapshot, or empty) creates a job that is missing, for jobs enqueued with ARQ
# directly. Replies {outcome, status, data of each applied patch}; outcome is 'ok', 'final'
# (the rest were refused: the job is terminal) or 'missing'.
_WRITE = f"""
local terminal = {_TERMINAL_LUA}
local function split(s)
  local t = {{}}
  for part in string.gmatch(s, '[^%z]+') do t[#t + 1] = part end
  return t
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  if ARGV[4] == '' then return {{'missing', ''}} end
  redis.call('HSET', KEYS[1], 'seq', 0, unpack(split(ARGV[4])))
{_INDEX_LUA}
  status = redis.call('HGET', KEYS[1], 'status')
end
local applied = {{}}
for i = 5, #ARGV do
  if terminal[status] then return {{'final', status, unpack(applied)}} end
  local patch = split(ARGV[i])
  if patch[1] == '?from' then
    -- A guarded patch applies only from the statuses it names ('|'-separated fragments).
    if not string.find('|' .. patch[2] .. '|', '|' .. status .. '|', 1, true) then
      return {{'refused', status, unpack(applied)}}
    end
    table.remove(patch, 1)
    table.remove(patch, 1)
  end
  redis.call('HSET', KEYS[1], unpack(patch))
  redis.call('HINCRBY', KEYS[1], 'seq', 1)
{_COMPOSE_LUA}
{_RECORD_LUA.replace("ARGV[HISTORY]", "ARGV[3]")}
  applied[#applied + 1] = data
  status = v[{_STATUS_INDEX}]
end
if terminal[status] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  if redis.call('HEXISTS', KEYS[1], 'callback') == 1 then
    -- Its webhook is due now: queued in the same step that ends the job.
    local now = redis.call('TIME')
    local due = now[1] * 1000 + math.floor(now[2] / 1000)
    redis.call('ZADD', '{keys.WEBHOOKS}', due, redis.call('HGET', KEYS[1], 'job_id'))
  end
end
if KEYS[3] then
  -- Written by a worker: the job counts as that worker's while it is at work, so that it is
  -- recovered if the worker stops beating (jobhub/recovery.py).
  local job = redis.call('HGET', KEYS[1], 'job_id')
  local at_work = {_AT_WORK_LUA}
  if at_work[status] then
    redis.call('SADD', KEYS[3], job)
  else
    redis.call('SREM', KEYS[3], job)
  end
end
return {{'ok', status, unpack(applied)}}
"""


class PreparedWrite:
    """A write encoded and ready to send (see ``Store.prepare``)."""

    __slots__ = ("init", "job_id", "owner", "patch")

    def __init__(self, job_id: str, patch: bytes, init: bytes, owner: str | None) -> None:
        self.job_id = job_id
        self.patch = patch
        self.init = init
        self.owner = owner


class Store:
    """Snapshots and the function registry in Redis, over a ``redis.asyncio`` client."""

    def __init__(self, redis: Redis, *, result_ttl_seconds: int, history_limit: int = 500) -> None:
        self._redis = redis
        self._ttl = result_ttl_seconds
        self._history = history_limit
        self._create = redis.register_script(_CREATE)
        self._write_sha = redis.register_script(_WRITE).sha

    async def create(
        self, snapshot: Snapshot, *, callback_url: str | None = None
    ) -> tuple[bool, bytes]:
        """Store and publish a job's first snapshot unless the job exists.

        Returns ``(True, data)`` if it was created, ``(False, existing data)`` if not: a
        client-chosen job id is an idempotency key. With ``callback_url``, the job's final
        snapshot will be delivered there (jobhub/webhooks.py).
        """
        job_id = snapshot.job_id
        args: list[Any] = [keys.job_channel(job_id), self._history]
        for name in _FIELDS:
            args += [name, _encode(getattr(snapshot, name))]
        if callback_url is not None:
            args += ["callback", _encode(callback_url)]
        job_keys = [keys.job_snapshot(job_id), keys.job_history(job_id)]
        created, data = await self._create(keys=job_keys, args=args)
        return created == 1, cast(bytes, data)

    async def write(
        self, job_id: str, patch: Mapping[str, Any], *, only_from: Collection[Status] = ()
    ) -> bytes:
        """Set the fields in ``patch`` as the job's next snapshot; returns its JSON.

        Raises ``JobIsFinal`` if the job is terminal (nothing is stored), ``JobNotFound``
        if it does not exist, ``WrongStatus`` if ``only_from`` is given and the job's status
        is not among it, and ``TypeError`` if a value cannot be encoded as JSON.
        """
        [result] = await self.write_many([self.prepare(job_id, patch, only_from=only_from)])
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
    ) -> PreparedWrite:
        """Encode a write now (a bad value raises here), to send with ``write_many``.

        With ``function``, a job that does not exist is created as a queued job of that
        function first (a job enqueued with ARQ directly still gets snapshots). With
        ``only_from``, the write applies only if the job's status is one of those, else it
        meets ``WrongStatus``. ``owner`` is the id of the worker writing, which keeps the job
        among its jobs while it is at work.
        """
        unknown = patch.keys() - PATCHABLE
        if unknown:
            raise InvalidRequest(f"not patchable snapshot fields: {sorted(unknown)}")
        now = _encode(utcnow())
        parts = [b"updated_at", now]
        if only_from:
            parts[:0] = [b"?from", b"|".join(_encode(status) for status in only_from)]
        for name, value in patch.items():
            parts += [name.encode(), _encode(value)]
        init = b""
        if function is not None:
            init = b"\0".join(
                [b"job_id", _encode(job_id), b"function", _encode(function), _QUEUED_REST,
                 b"created_at", now, b"updated_at", now]
            )  # fmt: skip
        return PreparedWrite(job_id, b"\0".join(parts), init, owner)

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
            await self._redis.script_load(_WRITE)
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
                else:
                    results.append(JobIsFinal(write.job_id, msgspec.json.decode(status)))
        return results

    async def _send(self, groups: list[list[PreparedWrite]]) -> list[Any]:
        def args(group: list[PreparedWrite]) -> list[Any]:
            job_id = group[0].job_id
            init = next((w.init for w in group if w.init), b"")
            patches = [w.patch for w in group]
            job_keys = [keys.job_snapshot(job_id), keys.job_history(job_id)]
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
                init,
                *patches,
            ]

        if len(groups) == 1:
            try:
                return [await self._redis.execute_command("EVALSHA", *args(groups[0]))]  # type: ignore[no-untyped-call]
            except NoScriptError as exc:
                return [exc]
        # Plain EVALSHA rather than Script objects: a pipeline holding Script objects asks
        # Redis whether they exist before every execution, a round trip of its own.
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in groups:
                pipe.execute_command("EVALSHA", *args(group))
            return await pipe.execute(raise_on_error=False)

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
