"""Everything jobhub knows of ARQ, in one adapter: its keys, its results, its abort set, its
retry signals, its error strings, and how a job function is registered with it.

ARQ owns its records of a job (its queue entry, job key, in-progress key, result, abort set
entry); jobhub's snapshot is the job's state, and these records follow from it. Nothing else
in jobhub imports ``arq`` except the worker settings builder (jobhub/worker/settings.py), and
where ARQ has a public API (``Job.result_info``, ``serialize_job``, ``func``, ``Retry``)
this module uses it. ARQ's keys themselves are ARQ's constants, read here and nowhere else.

    queue = ArqQueue(redis, queue_name="arq:queue")
    enqueue = queue.enqueue("job-1", "demo.count", [], {"steps": 5}, defer_ms=0)
    await queue.abort("job-1")
    views = await queue.inspect(["job-1"])
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.constants import (
    abort_jobs_ss,
    default_queue_name,
    expires_extra_ms,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
)
from arq.jobs import DeserializationError, Job, JobResult, serialize_job
from arq.worker import Function, Retry, RetryJob, func
from redis.asyncio import Redis

from jobhub.core.settings import Settings
from jobhub.lifecycle.failures import printable
from jobhub.store.connections import RedisPolicy, WorkerPipeline, worker_pool
from jobhub.store.store import Enqueue

__all__ = [
    "ARQ_TIMEOUT",
    "DEFAULT_QUEUE",
    "IN_PROGRESS_MS",
    "ArqQueue",
    "ArqView",
    "Function",
    "JobResult",
    "Retry",
    "WorkerRedis",
    "arq_pool",
    "arq_settings",
    "end_superseded",
    "failure_of",
    "register",
]

ARQ_TIMEOUT = 10 * 365 * 24 * 3600.0
"""The time limit ARQ is given for every job: none. A job's own limit is kept by its
wrapper (jobhub/worker/runner.py), and a lost worker's jobs are recovered by the heartbeats,
not by ARQ's in-progress expiry (which, with a real limit, would start long jobs twice)."""

IN_PROGRESS_MS = int((ARQ_TIMEOUT + 10) * 1000)
"""How long ARQ keeps a job's in-progress key: its longest job timeout plus 10 s."""

DEFAULT_QUEUE = default_queue_name


def register(run: Callable[..., Awaitable[Any]], *, name: str, max_tries: int) -> Function:
    """``run`` as an ARQ job function under ``name``, with ARQ's own timeout out of play.

    ARQ keeps no result of a run of it (``keep_result=0``): the run's terminal snapshot
    holds its result or error, and is what every reader reads; a canceled run's snapshot is
    written before ARQ is asked to abort it. A second copy cost a pickle and a SET per job
    and a key in Redis for as long as the result was kept (docs/performance.md). ARQ still
    keeps a result, for the worker's ``keep_result``, of each job it ends without running
    it (not found, expired, out of tries, aborted before it started): the reconciler reads
    those.
    """
    # (ARQ's type for a job function does not know positional-only parameters.)
    return func(run, name=name, timeout=ARQ_TIMEOUT, max_tries=max_tries, keep_result=0)  # type: ignore[arg-type]


def end_superseded() -> Exception:
    """What a superseded run tells ARQ: ``RetryJob``, the one end after which ARQ leaves the
    job's record, queue entry, tries and result as they are (they are the newer run's)."""
    return RetryJob()


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


def failure_of(result: JobResult | None, unreadable: str | None) -> tuple[str, str]:
    """Why ARQ ended a job that jobhub's wrapper never ended: an error type and detail.

    ARQ says why only in the text of its ``JobExecutionFailed``; these are its words.
    """
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


class ArqQueue:
    """ARQ's records of jobs in one queue, read and written as jobhub's lifecycle needs."""

    def __init__(self, redis: Redis, *, queue_name: str) -> None:
        self._redis = redis
        self.queue_name = queue_name

    def enqueue(
        self,
        job_id: str,
        function: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        now_ms: int,
        defer_ms: int,
    ) -> Enqueue:
        """The queue entry of a new job, for ``Store.create`` to write with its snapshot in
        one step."""
        return Enqueue(
            job_key=job_key_prefix + job_id,
            payload=serialize_job(function, tuple(args), dict(kwargs), None, now_ms),
            # As ARQ's own enqueue_job: a job not started within a day of its time expires.
            ttl_ms=defer_ms + expires_extra_ms,
            queue=self.queue_name,
            score=now_ms + defer_ms,
            held_keys=(result_key_prefix + job_id,),
        )

    def result_key(self, job_id: str) -> str:
        return result_key_prefix + job_id

    def in_progress_key(self, job_id: str) -> str:
        return in_progress_key_prefix + job_id

    @staticmethod
    def run_keys_of(job_id: str, queue_name: str) -> list[str]:
        """The keys a newer run holds in ARQ: in-progress key, job key, the queue."""
        return [in_progress_key_prefix + job_id, job_key_prefix + job_id, queue_name]

    async def abort(self, job_id: str) -> None:
        """Ask ARQ to abort the job: a queued one never starts, a running one is cancelled."""
        # ARQ's Job.abort() would also wait for, and unpickle, the job's result, and re-raise
        # whatever exception it holds; only the request to abort is wanted here.
        await self._redis.zadd(abort_jobs_ss, {job_id: int(time.time() * 1000)})

    async def abort_many(self, job_ids: Sequence[str]) -> None:
        """``abort`` for many jobs in one round trip (a batch's cancel)."""
        if job_ids:
            now_ms = int(time.time() * 1000)
            await self._redis.zadd(abort_jobs_ss, dict.fromkeys(job_ids, now_ms))

    async def depth(self) -> int:
        """Jobs waiting in the queue (deferred ones included)."""
        return int(await self._redis.zcard(self.queue_name))

    async def release(self, job_id: str) -> None:
        """Let any worker take the job again at its next poll (its run was lost)."""
        await self._redis.delete(in_progress_key_prefix + job_id)

    async def forget(self, job_id: str) -> None:
        """Take an ended job out of ARQ's queue, so that no worker runs it after all."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.queue_name, job_id)
            pipe.zrem(abort_jobs_ss, job_id)
            pipe.delete(in_progress_key_prefix + job_id, job_key_prefix + job_id)
            await pipe.execute()

    async def requeue(self, job_id: str, function: str, result: JobResult) -> None:
        """Put a job that ARQ ended back in its queue, with the arguments ARQ kept."""
        now_ms = int(time.time() * 1000)
        payload = serialize_job(function, result.args, result.kwargs, None, now_ms)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(result_key_prefix + job_id)
            pipe.set(job_key_prefix + job_id, payload, px=expires_extra_ms, nx=True)
            pipe.zadd(self.queue_name, {job_id: now_ms})
            await pipe.execute()

    async def inspect(self, job_ids: Sequence[str]) -> list[ArqView]:
        """What ARQ holds of each job, in one round trip (plus one per ended job)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(job_key_prefix + job_id)
                pipe.pttl(in_progress_key_prefix + job_id)
            replies = await pipe.execute()
        views = []
        for job_id, exists, mark_ttl in zip(job_ids, replies[::2], replies[1::2], strict=True):
            if exists:
                # ARQ sets the key for exactly IN_PROGRESS_MS (every job has ARQ_TIMEOUT):
                # what is gone of that is how long ago it was set.
                ago = IN_PROGRESS_MS - mark_ttl if mark_ttl > 0 else None
                views.append(ArqView(queued=True, result=None, marked_ms_ago=ago))
                continue
            try:
                result = await self.result(job_id)
            except DeserializationError as exc:
                views.append(ArqView(queued=False, result=None, unreadable=str(exc)))
                continue
            views.append(ArqView(queued=False, result=result))
        return views

    async def result(self, job_id: str) -> JobResult | None:
        """ARQ's stored result of the job; raises ``DeserializationError`` for one that
        cannot be read."""
        return await Job(job_id, self._redis, _queue_name=self.queue_name).result_info()

    async def results(self, cursor: int, count: int) -> tuple[int, list[str]]:
        """One slice of a SCAN over the jobs ARQ holds a result of: the next cursor (0 at the
        end) and their ids."""
        cursor, found = await self._redis.scan(cursor, match=result_key_prefix + "*", count=count)
        return cursor, [key.decode().removeprefix(result_key_prefix) for key in found]

    async def readable_result(self, job_id: str) -> JobResult | None:
        """``result``, or None where it cannot be read."""
        try:
            return await self.result(job_id)
        except DeserializationError:
            return None

    async def drop_results(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            await self._redis.delete(*(result_key_prefix + job_id for job_id in job_ids))


class WorkerRedis(ArqRedis):
    """ARQ's client, on the workers' pool (jobhub/store/connections.py), and making each
    pipeline a ``WorkerPipeline``, so that a WATCH a dropped connection lost is watched
    again or aborted the way ARQ expects."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> WorkerPipeline:
        return WorkerPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


def arq_pool(settings: Settings) -> WorkerRedis:
    """The workers' client, for ARQ's ``redis_pool`` setting: no dropped connection, Redis
    restart or failover ends the worker (``RedisPolicy.for_workers``)."""
    return WorkerRedis(worker_pool(settings), default_queue_name=settings.queue_name)


def arq_settings(settings: Settings) -> RedisSettings:
    """ARQ's connection settings, for what ARQ connects by itself from the settings class
    (``arq --check``): retried as the workers' pool is, and a worker started before its
    Redis waits for it."""
    base = RedisSettings.from_dsn(settings.redis_url)
    kwargs = RedisPolicy.for_workers(settings).connection_kwargs()
    base.retry = kwargs["retry"]
    base.retry_on_error = kwargs["retry_on_error"]
    base.conn_retries = 1_000_000
    base.conn_retry_delay = 1
    return base
