"""Redis: every snapshot write is one atomic step (the reads are in ``queries.py``).

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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from jobhub.core import keys
from jobhub.core.exceptions import (
    JobhubError,
    JobIsFinal,
    JobNotFound,
    OutputTooLarge,
    QueueHoldsId,
    RunSuperseded,
    WrongStatus,
)
from jobhub.core.settings import Settings
from jobhub.core.snapshot import Snapshot, Status
from jobhub.store.lua import (
    CREATE,
    DELETE,
    FIELDS,
    FLUSH,
    NEWER_RUN,
    RELEASE_MARK,
    WRITE,
    create_keys,
    delete_keys,
    write_keys,
)
from jobhub.store.lua.feed import fed
from jobhub.store.patches import PreparedWrite, encode_entry, encode_patch
from jobhub.store.queries import Queries

__all__ = ["TOMBSTONE_MARGIN_SECONDS", "Enqueue", "Store"]

_encode = msgspec.json.Encoder().encode

TOMBSTONE_MARGIN_SECONDS = 3600
"""How much longer than a result a deleted job's tombstone lives: a run still ending when
its job was deleted (a slow ``finally``) writes the queue's result later, kept a result's
TTL from then."""


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


class Store(Queries):
    """Job snapshots in Redis, over a ``redis.asyncio`` client: the writes here, the reads
    inherited from ``Queries``."""

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
        archive_feed_max: int = 100_000,
        archive_on: bool = False,
    ) -> None:
        super().__init__(redis)
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
        # The step that ends a job also feeds it to the archiver: always where the archive is
        # set up (``archive_on``), elsewhere while its feed exists (jobhub/store/lua/feed.py).
        self._write_lua = fed(WRITE, archive_feed_max, always=archive_on)
        self._write_sha = redis.register_script(self._write_lua).sha

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> Store:
        """The store as the settings say, for every process (web app, worker) alike."""
        return cls(
            redis,
            result_ttl_seconds=settings.result_ttl_seconds,
            history_limit=settings.history_limit,
            output_limit=settings.output_limit,
            output_max_bytes=settings.output_max_bytes,
            wait_replicas=settings.wait_replicas,
            wait_timeout_ms=int(settings.redis_wait_timeout_seconds * 1000),
            archive_feed_max=settings.archive_feed_max,
            archive_on=settings.archive_url is not None,
        )

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
        queued = () if enqueue is None else (enqueue.job_key, enqueue.queue, *enqueue.held_keys)
        job_keys = create_keys(job_id, queued, snapshot.tags)
        args: list[Any] = [keys.job_channel(job_id), self._history, "", "", "", "",
                           "1" if unless_deleted else "0", len(snapshot.tags)]  # fmt: skip
        if enqueue is not None:
            args[2:6] = [enqueue.payload, enqueue.ttl_ms, enqueue.score, job_id]
        for name in FIELDS:
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
        is now (see ``lua.WRITE``).
        """
        return encode_patch(
            job_id, patch, function=function, only_from=only_from, owner=owner, run=run,
            hidden=hidden, once=once,
        )  # fmt: skip

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
        return encode_entry(job_id, encoded, run=run, owner=owner, once=once)

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
            await self._redis.script_load(self._write_lua)
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
        # once WAIT says a replica has it (jobhub/store/lua), in the same round trip.
        outbox = keys.outbox(secrets.token_hex(8)) if self._replicas else keys.outbox("-")
        stash = "1" if self._replicas else "0"

        def args(group: list[PreparedWrite]) -> list[Any]:
            job_id = group[0].job_id
            init = next((w.init for w in group if w.init), b"")
            patches = [w.patch for w in group]
            job_keys = write_keys(job_id, outbox, group[0].owner)
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

    async def delete(self, job_id: str, *, also: Sequence[str] = ()) -> Status | None:
        """Delete an ended job and everything kept of it (and the keys in ``also``); returns
        its status (a job not ended is left as it is), or None if there is no such job."""
        job_keys = delete_keys(job_id, also)
        status = await self._delete(keys=job_keys, args=[self._ttl + TOMBSTONE_MARGIN_SECONDS])
        return None if status is None else Status(msgspec.json.decode(status))

    async def newer_run(
        self, job_id: str, step: str, stale: str, arq: Sequence[str], argv: Sequence[Any]
    ) -> bool:
        """Keep a newer run's queue records safe from the queue's end of the superseded run
        ``stale``: ``step`` is ``park`` (before that end) or ``keep`` (after it); ``arq`` the
        queue's in-progress key, job key and queue; ``argv`` the token of no run, the job's
        id in the queue and the step's amount. See ``lua.NEWER_RUN``."""
        done = await self._newer_run(
            keys=[keys.job_snapshot(job_id), *arq], args=[step, stale, *argv]
        )
        return bool(done)

    async def release_mark(self, job_id: str, mark: str, seq: int) -> bool:
        """Delete the queue's in-progress key ``mark`` of a job still queued at ``seq``. See
        ``lua.RELEASE_MARK``."""
        done = await self._release_mark(keys=[keys.job_snapshot(job_id), mark], args=[seq])
        return bool(done)

    async def forget_active(self, job_ids: Sequence[str]) -> None:
        await self._redis.zrem(keys.ACTIVE, *(_encode(job_id) for job_id in job_ids))
