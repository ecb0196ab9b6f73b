"""A job's life: every transition it can make, who makes it, and all jobhub knows of ARQ.

A job has one state machine, its snapshot's ``status``. ARQ's own records of the job (its
queue entry, job key, in-progress key, result, abort set) follow from it, and only this
module reads or writes them. Every transition is a guarded write of the snapshot (one Lua
step, ``Store``): it applies only from the statuses the table below names, so two parties
racing (a cancel and a finish, two recoverers) can never both win.

=========  ==============================  ========  ============================================
operation  from                            to        who
=========  ==============================  ========  ============================================
create     (nothing)                       queued    ``POST /jobs``; the snapshot and ARQ's queue
                                                     entry are written in one atomic step
start      queued, started, running,       started   a worker's run begins (ARQ picked the job);
           paused                                    it gets a new run token, so the newest
                                                     start wins and older runs are fenced off
report     started, running                running   the run (``job.report``); from paused it
                                                     waits for resume
pause      running                         paused    ``POST /jobs/{id}/pause``
resume     paused                          running   ``POST /jobs/{id}/resume``
requeue    started, running, paused        queued    the run raised ``Retry`` with tries left
finish     started, running, paused        finished  the run returned
fail       started, running, paused        failed    the run raised, ran out of time or tries, or
                                                     returned what JSON cannot carry
cancel     queued, started, running,       canceled  ``POST /jobs/{id}/cancel``; ARQ is asked to
           paused                                    abort it
lose       started, running, paused        queued    recovery: the run's worker stopped beating;
                                           / failed  run again if tries are left
settle     queued, started, running,       queued    the reconciler: ARQ ended the job without
           paused                          / failed  jobhub's wrapper (function not found,
                                                     expired, tries exceeded) or no longer knows
                                                     it; a job whose function the worker lacked
                                                     is handed back to the queue for another
=========  ==============================  ========  ============================================

The run's own writes (start excepted) carry its token and are refused once it is not the
job's newest run (``RunSuperseded``): a worker that stalled past the lost-worker window and
wakes up can no longer overwrite the attempt that replaced it. Nor can its ARQ: the stale run
ends as ``RetryJob``, the one end after which ARQ keeps the job's record, queue entry and
result as they are, and the one key ARQ still deletes, the job's in-progress key (by then the
newer run's), is put back (``Run.keep_newer``), the job's queue entry parked out of every
poll's reach meanwhile. Each write of a run carries its number too,
so that one sent again after a failover is applied once.

A deleted job leaves a tombstone for longer than ARQ keeps a result: a run still ending when
its job was deleted cannot bring it back through the reconciler's adoption, and a new job
under the same id clears it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from arq.constants import (
    abort_jobs_ss,
    default_queue_name,
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
)
from arq.jobs import DeserializationError, Job, JobResult, serialize_job
from arq.worker import RetryJob
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobhub.core.exceptions import InvalidRequest, JobhubError, JobNotFound, WrongStatus
from jobhub.core.metrics import WorkerMetrics
from jobhub.core.snapshot import AT_WORK, TERMINAL, JobError, Snapshot, Status, decode, utcnow
from jobhub.store.store import Enqueue, Store
from jobhub.store.writes import WriteBatch

__all__ = [
    "ACTIVE",
    "ARQ_TIMEOUT",
    "IN_PROGRESS_MS",
    "MAX_ARGUMENTS_BYTES",
    "OUTPUT_BACKLOG",
    "TRANSITIONS",
    "ArqView",
    "Lifecycle",
    "Run",
    "Transition",
    "error_of",
    "new_run_token",
    "printable",
]

ACTIVE = frozenset({Status.QUEUED, *AT_WORK})
"""Every status that is not terminal."""


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[Status]
    target: Status
    by: str


TRANSITIONS: Mapping[str, Transition] = {
    "start": Transition(ACTIVE, Status.STARTED, "worker"),
    "report": Transition(frozenset({Status.STARTED, Status.RUNNING}), Status.RUNNING, "run"),
    "pause": Transition(frozenset({Status.RUNNING}), Status.PAUSED, "operator"),
    "resume": Transition(frozenset({Status.PAUSED}), Status.RUNNING, "operator"),
    "requeue": Transition(AT_WORK, Status.QUEUED, "run"),
    "finish": Transition(AT_WORK, Status.FINISHED, "run"),
    "fail": Transition(AT_WORK, Status.FAILED, "run"),
    "cancel": Transition(ACTIVE, Status.CANCELED, "operator"),
    "lose": Transition(AT_WORK, Status.QUEUED, "recovery"),
    "settle": Transition(ACTIVE, Status.FAILED, "reconciler"),
}
"""The lifecycle table above, as data: each operation's allowed statuses and its result."""


ARQ_TIMEOUT = 10 * 365 * 24 * 3600.0
"""The time limit ARQ is given for every job: none. A job's own limit is kept by its
wrapper (jobhub/worker/runner.py), and a lost worker's jobs are recovered by the heartbeats."""

IN_PROGRESS_MS = int((ARQ_TIMEOUT + 10) * 1000)
"""How long ARQ keeps a job's in-progress key: its longest job timeout plus 10 s."""

_NO_RUN = "none"
"""The run token of a job that no run holds (new tokens are hex: they never equal it)."""


def retry_id(job_id: str) -> str:
    """The id of ``job_id``'s retry: 128 bits derived from it, in a job id's alphabet."""
    digest = hashlib.blake2b(f"retry:{job_id}".encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_run_token() -> str:
    return secrets.token_hex(8)


ERROR_DETAIL_LIMIT = 8192
"""Characters of an error's message kept in the snapshot: the snapshot (and each history
entry) would otherwise carry a message of any size; the full traceback goes to the job's
log."""


def _error(type_: str, detail: str) -> JobError:
    # A message may carry lone surrogates (os.listdir's names for undecodable bytes), which
    # UTF-8 cannot carry; escape them so that the failure itself can always be stored.
    if len(detail) > ERROR_DETAIL_LIMIT:
        cut = len(detail) - ERROR_DETAIL_LIMIT
        detail = f"{detail[:ERROR_DETAIL_LIMIT]}… ({cut} more characters cut)"
    return JobError(type_, printable(detail))


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_of(exc: BaseException) -> JobError:
    """The snapshot's ``error`` for an exception a job raised."""
    try:
        detail = str(exc)
    except Exception as broken:  # its __str__ raised: say so, rather than fail on it
        detail = f"(its message could not be read: {type(broken).__name__})"
    return _error(type(exc).__name__, detail)


@dataclass(frozen=True, slots=True)
class ArqView:
    """What ARQ holds of a job: whether its job record exists, and its result if it ended."""

    queued: bool
    """ARQ's job key exists: the job waits in the queue, or runs."""
    result: JobResult | None
    unreadable: str | None = None
    """Why a stored result could not be read, if it could not."""
    marked_ms_ago: int | None = None
    """How long ago a worker marked the job in progress (ARQ's in-progress key), if one
    did."""


class Lifecycle:
    """The transitions of jobs, applied through ``store``, and ARQ's side of each.

    lifecycle = Lifecycle(redis, store, queue_name="arq:queue")
    created, data = await lifecycle.create("demo.count", [], {"steps": 5})
    data = await lifecycle.cancel(job_id)
    """

    def __init__(self, redis: Redis, store: Store, *, queue_name: str) -> None:
        self._redis = redis
        self.store = store
        self.queue_name = queue_name

    # -- operator and web side ------------------------------------------------------------

    async def create(
        self,
        function: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        job_id: str | None = None,
        callback_url: str | None = None,
        defer_seconds: float = 0.0,
        retry_of: str | None = None,
    ) -> tuple[str, bool, bytes]:
        """Store the queued snapshot and put the job in ARQ's queue, in one atomic step.

        With ``defer_seconds`` the job stays queued until then (its snapshot's ``start_at``
        says when). Returns ``(job_id, created, data)``; ``created`` is false when the id
        already names a job (its snapshot is returned). Raises ``QueueHoldsId`` when ARQ still
        holds a job or result under the id.
        """
        # 128 random bits in the id's own alphabet: unguessable, and valid as a client id too.
        job_id = job_id or secrets.token_urlsafe(16)
        now_ms = int(time.time() * 1000)
        defer_ms = int(defer_seconds * 1000)
        payload = serialize_job(function, tuple(args), dict(kwargs), None, now_ms)
        enqueue = Enqueue(
            job_key=job_key_prefix + job_id,
            payload=payload,
            # As ARQ's own enqueue_job: a job not started within a day of its time expires.
            ttl_ms=defer_ms + expires_extra_ms,
            queue=self.queue_name,
            score=now_ms + defer_ms,
            held_keys=(result_key_prefix + job_id,),
        )
        hidden = {"arguments": _arguments(args, kwargs)}
        if callback_url is not None:
            hidden["callback"] = msgspec.json.encode(callback_url)
        start_at = None
        if defer_ms:
            start_at = (
                datetime.fromtimestamp((now_ms + defer_ms) / 1000, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        queued = Snapshot.queued(job_id, function, start_at=start_at, retry_of=retry_of)
        created, data = await self.store.create(queued, hidden=hidden, enqueue=enqueue)
        return job_id, created, data

    async def retry(self, job_id: str) -> tuple[str, bool, bytes]:
        """Run an ended job again as a new job (a new id) with the same function and
        arguments; the new snapshot's ``retry_of`` names the old one, which keeps its final
        state. Returns ``(new job id, created, its snapshot)``.

        A job is retried once: its retry's id is derived from its own, so asking again (a
        second click, two operators at once) returns that job (``created`` false) instead of
        starting another. To run it once more, retry the retry.

        Raises ``JobNotFound``, ``WrongStatus`` for a job not ended yet, and
        ``InvalidRequest`` when its arguments were too large to keep.
        """
        snapshot = await self.store.read(job_id)
        if snapshot is None:
            raise JobNotFound(job_id)
        if not snapshot.is_terminal:
            raise WrongStatus(
                job_id,
                snapshot.status.value,
                f"job {job_id!r} is {snapshot.status.value}: only an ended job can be retried",
            )
        [stored] = await self.store.hidden(job_id, "arguments")
        arguments = msgspec.json.decode(stored) if stored is not None else {}
        if "args" not in arguments:
            raise InvalidRequest(
                f"job {job_id!r} cannot be retried: its arguments were not kept "
                f"(over {MAX_ARGUMENTS_BYTES} bytes, or it was enqueued with ARQ directly)"
            )
        return await self.create(
            snapshot.function,
            arguments["args"],
            arguments["kwargs"],
            job_id=retry_id(job_id),
            retry_of=job_id,
        )

    async def delete(self, job_id: str) -> None:
        """Remove an ended job: its snapshot, history, output, deliveries, listing entry and
        ARQ's result. Raises ``JobNotFound``, or ``WrongStatus`` for a job not ended yet
        (cancel it first)."""
        # ARQ's job record stays: a run of the job may still be ending (a canceled job's
        # `finally`), and a new job under the id must not be created while it does (ARQ's end
        # of the old run would delete the new one's record). What ARQ writes for the deleted
        # job later cannot bring it back: the delete leaves a tombstone.
        status = await self.store.delete(job_id, also=[result_key_prefix + job_id])
        if status is None:
            raise JobNotFound(job_id)
        if status not in TERMINAL:
            raise WrongStatus(
                job_id, status.value, f"job {job_id!r} is {status.value}: cancel it first"
            )

    async def detail(self, job_id: str) -> dict[str, Any]:
        """What an operator asks of a job beyond its snapshot: its arguments, timings,
        worker and tries."""
        data = await self.store.get(job_id)
        if data is None:
            raise JobNotFound(job_id)
        snapshot = decode(data)
        arguments_raw, worker, started_at = await self.store.hidden(
            job_id, "arguments", "worker", "started_at"
        )
        arguments = msgspec.json.decode(arguments_raw) if arguments_raw is not None else None
        ended_at = snapshot.updated_at if snapshot.is_terminal else None
        return {
            "snapshot": msgspec.json.decode(data),
            "arguments": arguments,
            "worker": worker,
            "timings": {
                "created_at": snapshot.created_at,
                "started_at": started_at,
                "ended_at": ended_at,
                "queued_seconds": _seconds_between(snapshot.created_at, started_at),
                "run_seconds": _seconds_between(started_at, ended_at),
            },
        }

    async def queue_depth(self) -> int:
        """Jobs waiting in ARQ's queue (deferred ones included)."""
        return int(await self._redis.zcard(self.queue_name))

    async def cancel(self, job_id: str) -> bytes:
        """The snapshot says ``canceled`` at once; ARQ is asked to abort the job (a queued
        one never starts, a running one is cancelled and its ``finally`` blocks run).

        Raises ``JobIsFinal`` for an ended job and ``JobNotFound`` for an unknown one.
        """
        data = await self._apply(job_id, "cancel", {"message": "canceled"})
        # ARQ's Job.abort() would also wait for, and unpickle, the job's result, and re-raise
        # whatever exception it holds; only the request to abort is wanted here.
        await self._redis.zadd(abort_jobs_ss, {job_id: int(time.time() * 1000)})
        return data

    async def pause(self, job_id: str) -> bytes:
        """Cooperative: the job's next progress report waits until it is resumed."""
        return await self._apply(job_id, "pause", {"message": "paused"})

    async def resume(self, job_id: str) -> bytes:
        return await self._apply(job_id, "resume", {"message": "resumed"})

    async def _apply(self, job_id: str, operation: str, patch: dict[str, Any]) -> bytes:
        step = TRANSITIONS[operation]
        return await self.store.write(
            job_id, {"status": step.target, **patch}, only_from=step.sources
        )

    # -- recovery and reconciliation ----------------------------------------------------------

    async def lose(self, job_id: str, worker_id: str, *, tries: int, reason: str) -> bool:
        """The run of ``job_id`` on ``worker_id`` is lost (``reason`` says how): run the job
        again if it has tries left, else fail it with ``WorkerLost``. Returns whether this
        call changed the job.

        Applies only while the lost worker's run is still the job's newest, so a job that a
        live worker has started again meanwhile is left alone.
        """
        run, owner = await self.store.hidden(job_id, "run", "worker")
        snapshot = await self.store.read(job_id)
        if snapshot is not None and snapshot.is_terminal and owner == worker_id:
            # Ended (canceled) while that run was lost: its worker never ends ARQ's side of
            # the run, and the in-progress key it left would keep the job in ARQ's queue (and
            # its id taken) for good.
            await self._forget(job_id)
            return False
        if snapshot is None or snapshot.status not in AT_WORK or owner != worker_id:
            return False
        if run is None or run == _NO_RUN:
            return False
        lost = reason
        step = TRANSITIONS["lose"]
        try:
            if snapshot.attempt < tries:
                message = f"{lost}; try {snapshot.attempt + 1} of {tries} re-queued"
                patch = {
                    "status": Status.QUEUED,
                    "attempt": snapshot.attempt + 1,
                    "percent": 0.0,
                    "message": message,
                }
                # A run token no run has fences the lost run off at once.
                await self.store.write(
                    job_id, patch, only_from=step.sources, run=run, hidden={"run": _NO_RUN}
                )
                # The job is still in ARQ's queue; without its in-progress key any worker
                # takes it at the next poll.
                await self._redis.delete(in_progress_key_prefix + job_id)
            else:
                error = _error("WorkerLost", f"{lost} on try {snapshot.attempt} of {tries}")
                await self.store.write(
                    job_id,
                    {"status": Status.FAILED, "error": error},
                    only_from=step.sources,
                    run=run,
                    hidden={"run": _NO_RUN},
                )
                await self._forget(job_id)
        except JobhubError:
            return False  # it changed meanwhile (ended, or a newer run): nothing to do
        return True

    async def inspect(self, job_ids: Sequence[str]) -> list[ArqView]:
        """What ARQ holds of each job, in one round trip (plus one per ended job)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(job_key_prefix + job_id)
                pipe.pttl(in_progress_key_prefix + job_id)
            replies = await pipe.execute()
        held = replies[::2]
        marks = replies[1::2]
        views = []
        for job_id, exists, mark_ttl in zip(job_ids, held, marks, strict=True):
            if exists:
                # ARQ sets the key for exactly IN_PROGRESS_MS (every job has ARQ_TIMEOUT):
                # what is gone of that is how long ago it was set.
                ago = IN_PROGRESS_MS - mark_ttl if mark_ttl > 0 else None
                views.append(ArqView(queued=True, result=None, marked_ms_ago=ago))
                continue
            try:
                result = await Job(job_id, self._redis, _queue_name=self.queue_name).result_info()
            except DeserializationError as exc:
                views.append(ArqView(queued=False, result=None, unreadable=str(exc)))
                continue
            views.append(ArqView(queued=False, result=result))
        return views

    async def release_mark(self, job_id: str, seq: int) -> bool:
        """Take back ARQ's in-progress mark of a job that no run took up: a worker whose
        connection dropped right as Redis ran the transaction that marks the job never
        learned that it had (its ``EXEC`` reply lost), and took the job for one another
        worker runs; the mark would keep every worker from it for ``IN_PROGRESS_MS``.

        Applies only while the job is still queued at ``seq`` (no run started since), in one
        step. Returns whether the mark was taken back: the next poll starts the job."""
        return await self.store.release_mark(job_id, in_progress_key_prefix + job_id, seq)

    async def settle(
        self, job_id: str, view: ArqView, *, offered: bool, max_handbacks: int = 20
    ) -> str | None:
        """Bring a job that ARQ ended without jobhub's wrapper, or no longer holds, to the
        state it is really in. Returns what was done (for logs), or None if nothing.

        ``offered``: whether a live worker offers the job's function. A job that a worker
        lacking its function took is queued again, up to ``max_handbacks`` times, while one
        does.
        """
        snapshot = await self.store.read(job_id)
        if snapshot is None or snapshot.is_terminal or view.queued:
            return None
        step = TRANSITIONS["settle"]
        result = view.result
        if result is not None and result.success:
            # The job ran and ARQ kept its result, but its own end was never stored.
            try:
                encoded_ok = msgspec.json.encode(result.result) is not None
            except (TypeError, ValueError):
                encoded_ok = False
            patch: dict[str, Any] = (
                {"status": Status.FINISHED, "percent": 100.0, "message": "finished",
                 "result": result.result}
                if encoded_ok
                else {"status": Status.FAILED, "error": _error(
                    "TypeError", "the job's result is not JSON-serializable")}
            )  # fmt: skip
            return await self._settle_write(job_id, patch, step, "finished from ARQ's result")
        reason = _arq_failure(result, view.unreadable)
        function = snapshot.function
        [handbacks] = await self.store.hidden(job_id, "handbacks")
        handed = int(handbacks or 0)
        if reason[0] == "FunctionNotFound" and offered and handed < max_handbacks:
            # A worker without the function took it (a rolling deploy, a worker started
            # with other settings); another worker offers it: queue it again for that one.
            requeued = await self._hand_back(job_id, snapshot, result, handed + 1)
            return "handed back to the queue" if requeued else None
        if reason[0] == "FunctionNotFound":
            reason = (
                "FunctionNotFound",
                f"no worker that took it offers {function!r}"
                + ("" if offered else f", and no live worker offers {function!r}"),
            )
        patch = {"status": Status.FAILED, "message": "failed", "error": _error(*reason)}
        return await self._settle_write(job_id, patch, step, f"failed: {reason[0]}")

    async def _settle_write(
        self, job_id: str, patch: dict[str, Any], step: Transition, done: str
    ) -> str | None:
        try:
            await self.store.write(job_id, patch, only_from=step.sources)
        except JobhubError:
            return None
        await self._forget(job_id)
        return done

    async def _hand_back(
        self, job_id: str, snapshot: Snapshot, result: JobResult | None, count: int
    ) -> bool:
        if result is None:
            return False
        now_ms = int(time.time() * 1000)
        payload = serialize_job(snapshot.function, result.args, result.kwargs, None, now_ms)
        message = f"handed back: the worker that took it lacks {snapshot.function!r}"
        try:
            await self.store.write(
                job_id,
                {"status": Status.QUEUED, "message": message},
                only_from=[Status.QUEUED],
                hidden={"handbacks": str(count)},
            )
        except JobhubError:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(result_key_prefix + job_id)
            pipe.set(job_key_prefix + job_id, payload, px=expires_extra_ms, nx=True)
            pipe.zadd(self.queue_name, {job_id: now_ms})
            await pipe.execute()
        return True

    async def _forget(self, job_id: str) -> None:
        """Take an ended job out of ARQ's queue, so that no worker runs it after all."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.queue_name, job_id)
            pipe.zrem(abort_jobs_ss, job_id)
            pipe.delete(in_progress_key_prefix + job_id, job_key_prefix + job_id)
            await pipe.execute()

    async def adoptable(self, cursor: int, count: int) -> tuple[int, list[tuple[str, JobResult]]]:
        """Jobs that ARQ failed before any jobhub code ran and that have no snapshot (enqueued
        with ARQ directly, for a function no worker that took it has): one slice of a SCAN
        over ARQ's results. Returns the next cursor (0 at the end) and what was found."""
        cursor, found = await self._redis.scan(cursor, match=result_key_prefix + "*", count=count)
        job_ids = [key.decode().removeprefix(result_key_prefix) for key in found]
        if not job_ids:
            return cursor, []
        exists = await self.store.exist_many(job_ids)
        deleted = await self.store.deleted_many(job_ids)
        # A deleted job's run that was still ending wrote its result after the delete: the
        # delete promised it gone, so it goes.
        leftovers = [result_key_prefix + job_id
                     for job_id, gone in zip(job_ids, deleted, strict=True) if gone]  # fmt: skip
        if leftovers:
            await self._redis.delete(*leftovers)
        adopted = []
        for job_id, known, gone in zip(job_ids, exists, deleted, strict=True):
            if known or gone:
                continue
            try:
                result = await Job(job_id, self._redis, _queue_name=self.queue_name).result_info()
            except DeserializationError:
                continue
            # Only ARQ's own failures: a job that ran through jobhub had a snapshot, and one
            # without it now has expired or was deleted.
            if result is not None and _arq_failure(result, None)[0] != "Failed":
                adopted.append((job_id, result))
        return cursor, adopted

    async def adopt(self, job_id: str, result: JobResult) -> bool:
        """Give a job that only ARQ knew a snapshot: queued, so that ``settle`` ends it. A job
        deleted meanwhile stays deleted."""
        snapshot = Snapshot.queued(job_id, result.function)
        created, _ = await self.store.create(snapshot, unless_deleted=True)
        return created


MAX_ARGUMENTS_BYTES = 64 * 1024
"""A job's arguments are kept (for its detail and its retry) up to this size as JSON."""


def _arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    encoded = msgspec.json.encode({"args": args, "kwargs": kwargs})
    if len(encoded) > MAX_ARGUMENTS_BYTES:
        return msgspec.json.encode({"truncated": True, "bytes": len(encoded)})
    return encoded


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    parse = datetime.fromisoformat
    return round((parse(end) - parse(start)).total_seconds(), 6)


def _arq_failure(result: JobResult | None, unreadable: str | None) -> tuple[str, str]:
    """Why ARQ ended a job that jobhub's wrapper never ended: an error type and detail."""
    if unreadable is not None:
        return "Lost", f"the queue ended it, and its record cannot be read: {unreadable}"
    if result is None:
        return "Lost", "the queue no longer holds it, and no worker ended it"
    error = result.result
    detail = printable(str(error))
    if type(error).__name__ == "JobExecutionFailed":
        if detail.startswith("function ") and detail.endswith(" not found"):
            return "FunctionNotFound", detail
        if detail == "job expired":
            return "Expired", "it waited in the queue longer than its expiry"
        if "retries exceeded" in detail:
            return "RetriesExhausted", f"the queue refused to run it again: {detail}"
    if type(error).__name__ == "CancelledError":
        return "Canceled", "the queue aborted it"
    return "Failed", f"{type(error).__name__}: {detail}"


PARK_MS = 60_000
"""How far a newer run's queue entry is moved while ARQ ends a superseded run (a round trip
or two): out of every poll's reach. Should the stale worker die in between, the newer run's
next try (after its ``Retry``) starts this much later."""

OUTPUT_BACKLOG = 1000
"""Unsent writes at which a job appending output waits for Redis to take them."""


class Run:
    """One run of a job on a worker: its writes, each fenced by the run's token.

    run = Run(batch, job_id, attempt=ctx["job_try"], worker_id=worker_id)
    started = run.start("demo.count")        # not awaited: the job begins at once
    await run.report(40.0, "step 2/5")
    await run.finish({"steps": 5})
    """

    __slots__ = (
        "_batch", "_refused", "_writes", "attempt", "job_id", "queue_name", "token", "worker_id",
    )  # fmt: skip

    def __init__(
        self,
        batch: WriteBatch,
        job_id: str,
        *,
        attempt: int,
        worker_id: str,
        queue_name: str = default_queue_name,
    ) -> None:
        self._batch = batch
        self.job_id = job_id
        self.attempt = attempt
        self.worker_id = worker_id
        self.queue_name = queue_name
        self.token = new_run_token()
        self._refused: BaseException | None = None
        self._writes = 0

    def _once(self) -> tuple[str, int]:
        """This write's id: the run's token and its number among the run's writes, so that
        one sent again (a connection retried across a failover) is applied once."""
        self._writes += 1
        return self.token, self._writes

    async def append(self, entry: Mapping[str, Any]) -> None:
        """Append an output entry (a log line, a chunk) without waiting for Redis: it is
        queued in order with the run's other writes, and goes out in the next round trip.

        Only a backlog of ``OUTPUT_BACKLOG`` unsent writes makes this wait, so a job
        writing as fast as it can is paced by Redis, never buffered without bound. A write
        Redis refused (the job ended, or this run was superseded) raises here, at the next
        entry. Raises ``TypeError``/``ValueError`` at once for what JSON cannot carry.

        The entry gets the run's ``attempt``, so that a reader tells a new attempt's output
        from the output of the one before it.
        """
        if self._refused is not None:
            raise self._refused
        entry = {**entry, "attempt": self.attempt}
        future = self._batch.append(self.job_id, entry, run=self.token, once=self._once())
        future.add_done_callback(self._note)
        if self._batch.backlog >= OUTPUT_BACKLOG:
            await asyncio.wait([future])
            if self._refused is not None:
                raise self._refused

    def _note(self, future: asyncio.Future[bytes]) -> None:
        if not future.cancelled() and future.exception() is not None and self._refused is None:
            self._refused = future.exception()

    def start(self, function: str) -> asyncio.Future[bytes]:
        """Submit ``started``: this run becomes the job's newest, fencing off any older one.
        ``function`` lets a job enqueued with ARQ directly get snapshots too."""
        step = TRANSITIONS["start"]
        patch = {"status": step.target, "percent": 0.0, "message": "started",
                 "attempt": self.attempt}  # fmt: skip
        hidden = {"run": self.token, "worker": self.worker_id, "started_at": utcnow()}
        return self._batch.submit(
            self.job_id, patch, function=function, only_from=step.sources, hidden=hidden,
            once=self._once(),
        )  # fmt: skip

    async def report(self, percent: float, message: str) -> bytes:
        """Raises ``WrongStatus`` (paused: the caller waits), ``JobIsFinal`` or
        ``RunSuperseded``."""
        step = TRANSITIONS["report"]
        patch = {"status": step.target, "percent": percent, "message": message}
        return await self._write(patch, step)

    async def requeue(self, message: str) -> bytes:
        step = TRANSITIONS["requeue"]
        patch = {"status": step.target, "attempt": self.attempt + 1, "percent": 0.0,
                 "message": message}  # fmt: skip
        return await self._write(patch, step)

    async def finish(self, result: Any) -> bytes:
        """Raises ``TypeError``/``ValueError`` (nothing stored) for a result JSON cannot
        carry."""
        step = TRANSITIONS["finish"]
        patch = {"status": step.target, "percent": 100.0, "message": "finished",
                 "result": result}  # fmt: skip
        return await self._write(patch, step)

    async def fail(self, error: JobError) -> bytes:
        step = TRANSITIONS["fail"]
        return await self._write({"status": step.target, "error": error}, step)

    async def status(self) -> Snapshot | None:
        return await self._batch.store.read(self.job_id)

    async def superseded(self) -> Exception:
        """What to tell ARQ of this run, now that a newer one has taken the job over.

        ``RetryJob``, whether the newer run waits in the queue, is under way or has ended:
        ARQ's records of the job (its record, queue entry, tries, result) are the newer run's
        by now, and this is the one end after which ARQ leaves them all as they are. Any
        other end makes ARQ delete the job's record and queue entry and store a result, so
        that the newer run's ``Retry`` would find no job to retry (measured: it then failed
        as ``Expired``). A ``Retry`` with a delay would move the queue entry, and a return
        would store this run's result. ARQ still deletes the in-progress key: first the
        job's queue entry is parked out of any poll's reach while a newer run holds the
        job, and ``keep_newer`` puts both back once ARQ is done.
        """
        # RetryJob even if Redis fails here: any other end would cost the newer run more.
        with contextlib.suppress(RedisError, OSError):
            await self._newer_run("park", PARK_MS)
        return RetryJob()

    async def keep_newer(self, held_ttl_ms: int) -> bool:
        """Once ARQ has ended this superseded run: put the newer run's queue entry back where
        it was, and the in-progress key ARQ deleted for this run, which was the newer run's,
        so that no worker starts the job a third time while the newer run is under way.
        Returns whether the key was put back."""
        return await self._newer_run("keep", held_ttl_ms)

    async def _newer_run(self, step: str, amount: int) -> bool:
        job_id = self.job_id
        arq = [in_progress_key_prefix + job_id, job_key_prefix + job_id, self.queue_name]
        return await self._batch.store.newer_run(
            job_id, step, self.token, arq, [_NO_RUN, job_id, amount]
        )

    @property
    def metrics(self) -> WorkerMetrics | None:
        return self._batch.metrics

    async def _write(self, patch: dict[str, Any], step: Transition) -> bytes:
        return await self._batch.submit(
            self.job_id, patch, only_from=step.sources, run=self.token, once=self._once()
        )
