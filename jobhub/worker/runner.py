"""The lifecycle written around every job: the ARQ function ``wrap`` builds runs a job
function between a ``started`` and a terminal write, through the run's fenced writes
(jobhub/lifecycle/runs.py), so a job does nothing for them; ``finished`` carries the return
value and ``failed`` the exception.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.exceptions import RedisError

from jobhub.core.exceptions import (
    JobhubError,
    JobIsFinal,
    JobNotFound,
    RetriesExhausted,
    RunSuperseded,
    WrongStatus,
)
from jobhub.core.logs import job as log_job
from jobhub.core.snapshot import JobError, decode, utcnow
from jobhub.lifecycle.arq import IN_PROGRESS_MS, Function, Retry, register
from jobhub.lifecycle.failures import error_of, printable
from jobhub.lifecycle.runs import Run
from jobhub.worker.context import JobContext, ThreadJobContext
from jobhub.worker.jobs import JobFunction
from jobhub.worker.runs import RUNTIME, RunEntry, WorkerRuntime

__all__ = ["SUPERSEDED", "JobRaised", "after_job_end", "wrap"]

logger = logging.getLogger("jobhub.worker")

SUPERSEDED = "jobhub.superseded"
"""Key, in one job's ARQ ``ctx``, of its run when that run ended superseded."""


def wrap(
    function: JobFunction, default_timeout: float = 300.0, default_max_tries: int = 5
) -> Function:
    """The ARQ function that runs ``function`` between a ``started`` and a terminal write.

    The job's time limit (its own, else ``default_timeout``; time spent paused does not
    count) is enforced here rather than by ARQ: ARQ's timeout cancels the job without a
    word, which would leave it ``running``.
    """
    limit = function.timeout or default_timeout
    tries = function.max_tries or default_max_tries

    # ``ctx`` is positional-only, so that a job may take a keyword argument named ``ctx``.
    async def run(ctx: dict[str, Any], /, *args: Any, **kwargs: Any) -> Any:
        worker = cast(WorkerRuntime, ctx[RUNTIME])
        job_id = cast(str, ctx["job_id"])
        this = Run(worker.batch, job_id, attempt=cast(int, ctx["job_try"]),
                   worker_id=worker.worker_id, queue_name=worker.queue_name)  # fmt: skip
        # Known to this worker before its start is stored, so that the heartbeat never
        # takes a run that is just starting for one that was lost.
        entry = worker.runs.add(this)
        # Not awaited: the job starts at once, and its first report or its end follows
        # `started` in order, often in the same round trip.
        started = this.start(function.name)
        try:
            return await _run(function, this, entry, ctx, limit, tries, args, kwargs)
        except RunSuperseded:
            ctx[SUPERSEDED] = this  # for after_job_end, once ARQ has ended the run
            # Known as superseded now, so that the heartbeat, finding it out too, does not
            # cancel what is left of it: telling ARQ how it ends.
            entry.superseded = True
            raise await this.superseded() from None
        finally:
            await _settle(started, job_id)
            worker.runs.remove(entry)

    # ARQ's own timeout never acts: a job's limit is kept above, and a lost worker's jobs
    # are recovered by the heartbeats (jobhub/worker/recovery.py).
    return register(run, name=function.name, max_tries=tries)


async def after_job_end(ctx: dict[str, Any]) -> None:
    """ARQ's ``after_job_end``: once ARQ has ended a superseded run's bookkeeping, put back
    what of the newer run's it deleted (``Run.keep_newer``)."""
    stale = cast(Run | None, ctx.get(SUPERSEDED))
    if stale is None:
        return
    job_id = stale.job_id
    try:
        kept = await stale.keep_newer(IN_PROGRESS_MS)
    except (RedisError, OSError) as exc:
        # Never raised to ARQ: an error from this hook ends the worker's poll loop. The
        # newer run goes on; only another worker could now start the job too.
        logger.warning("job %s: the newer run's in-progress mark not put back (%s)", job_id,
                       exc, extra=log_job(job_id))  # fmt: skip
        return
    if kept:
        logger.info("job %s: the newer run's in-progress mark put back", job_id,
                    extra=log_job(job_id))  # fmt: skip


class JobRaised(RuntimeError):
    """What ARQ is told of a job's exception it cannot handle itself: one that is not an
    Exception, or whose message cannot be read."""


def _readable(exc: BaseException) -> bool:
    try:
        str(exc)
    except Exception:
        return False
    return True


async def _run(
    function: JobFunction,
    run: Run,
    entry: RunEntry,
    ctx: dict[str, Any],
    limit: float,
    tries: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    job_id = run.job_id
    context = JobContext(run, ctx, entry)
    try:
        async with asyncio.timeout(limit) as deadline:
            entry.deadline = deadline
            if inspect.iscoroutinefunction(function.coroutine):
                result = await function.coroutine(context, *args, **kwargs)
            else:
                # A blocking function runs in the loop's thread pool, so the worker's
                # other jobs and its heartbeats go on meanwhile.
                threaded = ThreadJobContext(context, asyncio.get_running_loop())
                result = await asyncio.to_thread(function.coroutine, threaded, *args, **kwargs)
    except asyncio.CancelledError:
        if entry.superseded:
            # Cancelled by this worker's heartbeat: the job was declared lost here and runs
            # again elsewhere. ARQ ends this run as failed; the newest run's writes count.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            logger.warning("job %s: run superseded; stopped", job_id, extra=log_job(job_id))
            raise RunSuperseded(job_id, run.token) from None
        raise  # aborted (canceled), or the worker is shutting down
    except RunSuperseded:
        logger.warning("job %s: run superseded; stopped", job_id, extra=log_job(job_id))
        raise
    except TimeoutError as exc:
        error = exc  # the job's own TimeoutError, unless its time limit expired:
        if deadline.expired():
            error = TimeoutError(f"the job ran longer than its limit of {limit:g} s")
        await _traceback(run, exc)
        await _end(run, run.fail(error_of(error)), "failed")
        raise error from None
    except Retry as exc:
        raise await _retry_or_fail(run, function, exc, tries) from exc
    except BaseException as exc:
        # Any Exception; and SystemExit, KeyboardInterrupt, a job's own BaseException
        # subclass, which ARQ does not handle: they would stop the worker (and then each
        # worker that ran the job again). So would an exception whose message cannot be
        # read, when ARQ logs it.
        failure = error_of(exc)
        await _traceback(run, exc)
        await _end(run, run.fail(failure), "failed")
        if isinstance(exc, Exception) and _readable(exc):
            raise
        raise JobRaised(f"{failure.type}: {failure.detail}") from exc
    try:
        await _end(run, run.finish(result), "finished")
    except (TypeError, ValueError) as exc:
        # The result cannot be JSON (an object, a lone surrogate from os.listdir): say so in
        # the snapshot rather than leave the job looking unfinished.
        unencodable = TypeError(f"the job's result is not JSON-serializable: {exc}")
        await _end(run, run.fail(error_of(unencodable)), "failed")
        raise unencodable from exc
    return result


async def _retry_or_fail(run: Run, function: JobFunction, retry: Retry, tries: int) -> Exception:
    """The job raised ``Retry``: queue it again, the snapshot saying when the next try starts,
    or, after its last try, fail it. Returns what to raise for ARQ to act on."""
    job_id, attempt = run.job_id, run.attempt
    if attempt >= tries:
        cause = retry.__cause__
        error = (
            error_of(cause)
            if cause is not None
            else JobError("RetriesExhausted", f"still asked to be retried after {attempt} tries")
        )
        await _end(run, run.fail(error), "failed")
        # Not Retry: ARQ would queue it once more only to refuse it for its tries.
        return RetriesExhausted(f"job {job_id}: {error.type}: {error.detail}")
    if retry.defer_score:
        delay = retry.defer_score / 1000
    else:
        delay = (function.backoff or 0.0) * 2 ** (attempt - 1)
    at = datetime.now(UTC) + timedelta(seconds=delay)
    message = f"try {attempt + 1} of {tries} starts in {delay:g} s ({at:%H:%M:%S} UTC)"
    try:
        await run.requeue(message)
    except JobIsFinal as exc:
        # Canceled meanwhile: no more tries.
        return RetriesExhausted(f"job {job_id} is {exc.status}; not retried")
    return Retry(defer=delay)


async def _settle(started: asyncio.Future[bytes], job_id: str) -> None:
    try:
        await started
    except JobIsFinal as exc:
        # Ended (canceled) before it started; its own writes were refused the same way.
        logger.info(
            "job %s was already %s when it started", job_id, exc.status, extra=log_job(job_id)
        )
    except WrongStatus as exc:
        logger.info("job %s could not start: %s", job_id, exc, extra=log_job(job_id))
    except JobNotFound:
        # Deleted: ARQ still ran it (its queue entry outlived the delete); it stays deleted.
        logger.info("job %s was deleted before it started", job_id, extra=log_job(job_id))


async def _traceback(run: Run, exc: BaseException) -> None:
    """Append the failure's traceback to the job's log, where its owner sees it; the public
    snapshot keeps only ``error.type`` and ``error.detail``."""
    lines = "".join(traceback.format_exception(exc)).rstrip()
    entry = {"kind": "log", "level": "error", "message": printable(lines), "at": utcnow()}
    try:
        await run.append(entry)
    except (JobhubError, TypeError, ValueError) as refused:
        logger.info("job %s: traceback not stored: %s", run.job_id, refused,
                    extra=log_job(run.job_id))  # fmt: skip


async def _end(run: Run, write: Awaitable[bytes], status: str) -> None:
    """Await a run's terminal write; a job that ended otherwise meanwhile is only logged."""
    job_id = run.job_id
    try:
        data = await write
    except JobIsFinal as exc:
        logger.info(
            "job %s ended as %s before it could be marked %s",
            job_id,
            exc.status,
            status,
            extra=log_job(job_id),
        )
        return
    except RunSuperseded:
        logger.warning(
            "job %s: this run was superseded; its end (%s) is not stored",
            job_id,
            status,
            extra=log_job(job_id),
        )
        raise
    metrics = run.metrics
    if metrics is not None:
        ended = decode(data)
        metrics.ended.labels(ended.function, ended.status.value).inc()
