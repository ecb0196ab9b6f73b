"""The worker side: what a job function sees, and the lifecycle written around every job.

A job function takes a ``JobContext`` first and reports progress with one awaited call:

    @job("reports.build")
    async def build(job: JobContext, pages: int) -> dict[str, int]:
        for page in range(1, pages + 1):
            await render(page)
            await job.report(100 * page / pages, f"page {page}/{pages}")
        return {"pages": pages}

``started``, ``finished`` (with the return value) and ``failed`` (with the exception) are
written by the wrapper ``lifecycle`` builds, so a job does nothing for them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from arq.worker import Function, Retry, func

from .batch import WriteBatch
from .exceptions import InvalidProgress, JobIsFinal, JobNotFound, RetriesExhausted, WrongStatus
from .logs import job as log_job
from .snapshot import JobError, Status, decode

__all__ = [
    "PAUSE_POLL_SECONDS",
    "WRITER",
    "JobContext",
    "JobFunction",
    "ThreadJobContext",
    "job",
    "lifecycle",
]

logger = logging.getLogger("jobhub.worker")

WRITER = "jobhub.writer"
"""Key of the worker's ``WriteBatch`` in ARQ's ``ctx``, put there at worker startup."""

PAUSE_POLL_SECONDS = 0.2
"""How often a paused job looks whether it was resumed."""

# A report moves a job to running from these; from paused it waits, and from anything else
# (queued, or terminal) it is refused.
_REPORTING = (Status.STARTED, Status.RUNNING)

JobCoroutine = Callable[..., Awaitable[Any]] | Callable[..., Any]
"""A job function: ``async def`` runs on the worker's loop, a plain ``def`` in a thread."""


class JobContext:
    """Handed to a job function as its first argument."""

    def __init__(self, writer: WriteBatch, job_id: str, attempt: int, ctx: dict[str, Any]) -> None:
        self._writer = writer
        self.job_id = job_id
        self.attempt = attempt
        self.ctx = ctx
        """ARQ's job context (``job_id``, ``job_try``, ``redis``, …)."""

    async def report(self, percent: float, message: str = "") -> None:
        """Store and publish the job's progress: ``percent`` in 0..100 and a short message.

        Raises ``InvalidProgress`` for a percent outside 0..100 and ``JobIsFinal`` if the
        job already ended (the report is then not stored).
        """
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidProgress(f"percent must be a number, got {percent!r}")
        if not (math.isfinite(percent) and 0 <= percent <= 100):
            raise InvalidProgress(f"percent must be between 0 and 100, got {percent!r}")
        if not isinstance(message, str):
            raise InvalidProgress(f"message must be a string, got {type(message).__name__}")
        patch = {"status": Status.RUNNING, "percent": float(percent), "message": message}
        while True:
            try:
                await self._writer.write(self.job_id, patch, only_from=_REPORTING)
                return
            except WrongStatus as exc:
                if exc.status != Status.PAUSED:
                    raise
            await self._until_resumed()

    async def _until_resumed(self) -> None:
        # Pausing is cooperative: the job simply waits here, inside its report, until
        # POST /resume (or a cancel, which ends the job) changes its status.
        while True:
            await asyncio.sleep(PAUSE_POLL_SECONDS)
            snapshot = await self._writer.store.read(self.job_id)
            if snapshot is None:
                raise JobNotFound(self.job_id)
            if snapshot.is_terminal:
                raise JobIsFinal(self.job_id, snapshot.status.value)
            if snapshot.status is not Status.PAUSED:
                return


class ThreadJobContext:
    """What a blocking (plain ``def``) job function gets: the same, with a blocking report.

    @job("files.hash")
    def hash_files(job: ThreadJobContext, paths: list[str]) -> int:
        for i, path in enumerate(paths, 1):
            digest(path)                       # blocking work, in a worker thread
            job.report(100 * i / len(paths), path)
        return len(paths)
    """

    def __init__(self, context: JobContext, loop: asyncio.AbstractEventLoop) -> None:
        self._context = context
        self._loop = loop
        self.job_id = context.job_id
        self.attempt = context.attempt

    def report(self, percent: float, message: str = "") -> None:
        """Like ``JobContext.report``, from the job's thread: the write itself runs on the
        worker's event loop, and this returns once it is stored (or raises its error)."""
        coroutine = self._context.report(percent, message)
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


@dataclass(frozen=True, slots=True)
class JobFunction:
    """A job function and how it is registered with ARQ."""

    name: str
    coroutine: JobCoroutine
    timeout: float | None = None
    max_tries: int | None = None
    backoff: float | None = None
    """Seconds before the first retry, doubling for each try after (when ``Retry`` gives no
    ``defer`` of its own)."""


def job(
    name: str,
    *,
    timeout: float | None = None,
    max_tries: int | None = None,
    backoff: float | None = None,
) -> Callable[[JobCoroutine], JobFunction]:
    """Declare a job function under the name clients enqueue it by.

    A job asks to be run again by raising ARQ's ``Retry``; it gets ``max_tries`` tries in
    all (the worker's ``JOBHUB_MAX_TRIES`` by default), ``backoff`` seconds apart, doubling.
    """

    def register(coroutine: JobCoroutine) -> JobFunction:
        return JobFunction(name, coroutine, timeout, max_tries, backoff)

    return register


def lifecycle(
    function: JobFunction, default_timeout: float = 300.0, default_max_tries: int = 5
) -> Function:
    """The ARQ function that runs ``function`` between a ``started`` and a terminal write.

    The job's time limit (its own, else ``default_timeout``) is enforced here rather than by
    ARQ: ARQ's timeout cancels the job without a word, which would leave it ``running``.
    """
    limit = function.timeout or default_timeout
    tries = function.max_tries or default_max_tries

    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        writer = cast(WriteBatch, ctx[WRITER])
        job_id = cast(str, ctx["job_id"])
        attempt = cast(int, ctx["job_try"])
        started_patch = {
            "status": Status.STARTED,
            "percent": 0.0,
            "message": "started",
            "attempt": attempt,
        }
        # Not awaited: the job starts at once, and its first report or its end follows
        # `started` in order, often in the same round trip. `function` lets a job that was
        # enqueued with ARQ directly get snapshots too.
        started = writer.submit(job_id, started_patch, function=function.name)
        context = JobContext(writer, job_id, attempt, ctx)
        try:
            try:
                async with asyncio.timeout(limit) as deadline:
                    if inspect.iscoroutinefunction(function.coroutine):
                        result = await function.coroutine(context, *args, **kwargs)
                    else:
                        # A blocking function runs in the loop's thread pool, so the worker's
                        # other jobs and its heartbeats go on meanwhile.
                        threaded = ThreadJobContext(context, asyncio.get_running_loop())
                        result = await asyncio.to_thread(
                            function.coroutine, threaded, *args, **kwargs
                        )
            except TimeoutError as exc:
                error = exc  # the job's own TimeoutError, unless its time limit expired:
                if deadline.expired():
                    error = TimeoutError(f"the job ran longer than its limit of {limit:g} s")
                await _end(writer, job_id, {"status": Status.FAILED, "error": _error(error)})
                raise error from None
            except Retry as exc:
                raise await _retry_or_fail(writer, function, exc, job_id, attempt, tries) from exc
            except Exception as exc:
                await _end(writer, job_id, {"status": Status.FAILED, "error": _error(exc)})
                raise
            try:
                finished = {"status": Status.FINISHED, "percent": 100.0, "message": "finished"}
                await _end(writer, job_id, {**finished, "result": result})
            except TypeError as exc:
                # The result cannot be JSON: say so in the snapshot rather than leave the
                # job looking unfinished.
                unencodable = TypeError(f"the job's result is not JSON-serializable: {exc}")
                await _end(writer, job_id, {"status": Status.FAILED, "error": _error(unencodable)})
                raise unencodable from exc
            return result
        finally:
            await _settle(started, job_id)

    # ARQ's own limit comes later, so that it only ever acts if this one could not.
    return func(run, name=function.name, timeout=limit + 5, max_tries=tries)


async def _retry_or_fail(
    writer: WriteBatch, function: JobFunction, retry: Retry, job_id: str, attempt: int, tries: int
) -> Exception:
    """The job raised ``Retry``: queue it again, the snapshot saying when the next try starts,
    or, after its last try, fail it. Returns what to raise for ARQ to act on."""
    if attempt >= tries:
        cause = retry.__cause__
        error = (
            _error(cause)
            if cause is not None
            else JobError("RetriesExhausted", f"still asked to be retried after {attempt} tries")
        )
        await _end(writer, job_id, {"status": Status.FAILED, "error": error})
        # Not Retry: ARQ would queue it once more only to refuse it for its tries.
        return RetriesExhausted(f"job {job_id}: {error.type}: {error.detail}")
    if retry.defer_score:
        delay = retry.defer_score / 1000
    else:
        delay = (function.backoff or 0.0) * 2 ** (attempt - 1)
    at = datetime.now(UTC) + timedelta(seconds=delay)
    message = f"try {attempt + 1} of {tries} starts in {delay:g} s ({at:%H:%M:%S} UTC)"
    patch = {"status": Status.QUEUED, "attempt": attempt + 1, "percent": 0.0, "message": message}
    try:
        await writer.write(job_id, patch)
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


def _error(exc: BaseException) -> JobError:
    return JobError(type(exc).__name__, str(exc))


async def _end(writer: WriteBatch, job_id: str, patch: dict[str, Any]) -> None:
    try:
        data = await writer.write(job_id, patch)
        if writer.metrics is not None:
            ended = decode(data)
            writer.metrics.ended.labels(ended.function, ended.status.value).inc()
    except JobIsFinal as exc:
        logger.info(
            "job %s ended as %s before it could be marked %s",
            job_id,
            exc.status,
            patch["status"],
            extra=log_job(job_id),
        )
