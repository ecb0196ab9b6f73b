"""The worker side: what a job function sees, and the lifecycle written around every job.

A job function takes a ``JobContext`` first and reports progress with one awaited call:

    @job("reports.build")
    async def build(job: JobContext, pages: int) -> dict[str, int]:
        for page in range(1, pages + 1):
            await render(page)
            await job.report(100 * page / pages, f"page {page}/{pages}")
        return {"pages": pages}

``started``, ``finished`` (with the return value) and ``failed`` (with the exception) are
written by the wrapper ``wrap`` builds, through the run's fenced writes
(jobhub/lifecycle/lifecycle.py), so a job does nothing for them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
from arq.constants import default_queue_name
from arq.worker import Function, Retry, func
from redis.exceptions import RedisError

from jobhub.core.exceptions import (
    InvalidProgress,
    JobhubError,
    JobIsFinal,
    JobNotFound,
    RetriesExhausted,
    RunSuperseded,
    WrongStatus,
)
from jobhub.core.logs import job as log_job
from jobhub.core.snapshot import JobError, Status, decode, utcnow
from jobhub.lifecycle.lifecycle import ARQ_TIMEOUT, Run, error_of, printable
from jobhub.store.writes import WriteBatch

__all__ = [
    "ARQ_TIMEOUT",
    "LOG_LEVELS",
    "PAUSE_POLL_SECONDS",
    "RUNTIME",
    "JobContext",
    "JobFunction",
    "RunEntry",
    "Runs",
    "ThreadJobContext",
    "WorkerRuntime",
    "after_job_end",
    "job",
    "wrap",
]

logger = logging.getLogger("jobhub.worker")

RUNTIME = "jobhub.runtime"
"""Key of the worker's ``WorkerRuntime`` in ARQ's ``ctx``, put there at worker startup."""

SUPERSEDED = "jobhub.superseded"
"""Key, in one job's ARQ ``ctx``, of its run when that run ended superseded."""

PAUSE_POLL_SECONDS = 0.2
"""How often a paused job looks whether it was resumed."""

LOG_LEVELS = ("debug", "info", "warning", "error")

JobCoroutine = Callable[..., Awaitable[Any]] | Callable[..., Any]
"""A job function: ``async def`` runs on the worker's loop, a plain ``def`` in a thread."""


_RAW_BYTES = (bytes, bytearray, memoryview)
_PLAIN = frozenset({int, bool, type(None)})  # always carried as they are


def _faithful(value: Any) -> None:
    """Raise ``TypeError`` for what JSON would not carry as it is: msgspec encodes NaN and
    the infinities as null and bytes as base64 text, and a lone surrogate is no UTF-8.

    ``value`` is as ``msgspec.to_builtins`` leaves it (structs, dataclasses, dates, … turned
    into dicts, lists and strings), bytes kept as they are so they can be refused here.
    """
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError as exc:
                raise TypeError(
                    f"JSON cannot carry a lone surrogate ({value[exc.start]!r} at {exc.start})"
                ) from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"JSON cannot carry {value!r}")
    elif isinstance(value, _RAW_BYTES):
        raise TypeError(f"JSON cannot carry {type(value).__name__}; decode it to text first")
    elif isinstance(value, dict):
        for key, item in value.items():
            _faithful(key)
            if type(item) not in _PLAIN:
                _faithful(item)
    elif isinstance(value, list | tuple):
        for item in value:
            # Most of a big chunk is numbers: skipping the call for them makes the check
            # ~12x cheaper for a list of 10,000 ints (0.3 ms against 3.5).
            if type(item) not in _PLAIN:
                _faithful(item)


class JobContext:
    """Handed to a job function as its first argument."""

    def __init__(self, run: Run, ctx: dict[str, Any], entry: RunEntry | None = None) -> None:
        self._run = run
        self._entry = entry
        self.job_id = run.job_id
        self.attempt = run.attempt
        self.ctx = ctx
        """ARQ's job context (``job_id``, ``job_try``, ``redis``, …)."""

    async def report(self, percent: float, message: str = "") -> None:
        """Store and publish the job's progress: ``percent`` in 0..100 and a short message.

        Raises ``InvalidProgress`` for a percent outside 0..100, ``JobIsFinal`` if the job
        already ended (the report is then not stored) and ``RunSuperseded`` if this run was
        declared lost and the job runs again elsewhere: either way the job should stop.
        """
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidProgress(f"percent must be a number, got {percent!r}")
        if not (math.isfinite(percent) and 0 <= percent <= 100):
            raise InvalidProgress(f"percent must be between 0 and 100, got {percent!r}")
        if not isinstance(message, str):
            raise InvalidProgress(f"message must be a string, got {type(message).__name__}")
        while True:
            try:
                await self._run.report(float(percent), message)
                return
            except WrongStatus as exc:
                if exc.status != Status.PAUSED:
                    raise
            await self._until_resumed()

    async def log(self, message: str, level: str = "info") -> None:
        """Append a line to the job's log, which every watcher of the job receives (SSE
        events named ``log``) and which is kept with the job.

        Returns once the line is queued; it is stored in order with everything else the job
        writes. ``level`` is one of ``debug``, ``info``, ``warning``, ``error``.
        """
        if not isinstance(message, str):
            raise InvalidProgress(f"a log message must be a string, got {type(message).__name__}")
        if level not in LOG_LEVELS:
            raise InvalidProgress(
                f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
            )
        _faithful(message)
        await self._run.append({"kind": "log", "level": level, "message": message, "at": utcnow()})

    async def output(self, data: Any) -> None:
        """Append a chunk of the job's partial result (any JSON value: a token of text, a
        row, an object), which every watcher receives (SSE events named ``output``), in
        order, and which a page refreshed later replays.

            for token in answer:
                await job.output(token)

        Raises ``TypeError`` at once for a value JSON cannot carry as it is (NaN or an
        infinity, bytes, a string holding a lone surrogate, an object of no JSON type,
        anywhere inside it) and ``OutputTooLarge`` for one over ``JOBHUB_OUTPUT_MAX_BYTES``
        of JSON; nothing is stored then.
        """
        _faithful(msgspec.to_builtins(data, builtin_types=_RAW_BYTES))
        await self._run.append({"kind": "output", "data": data, "at": utcnow()})

    async def _until_resumed(self) -> None:
        # Pausing is cooperative: the job simply waits here, inside its report, until
        # POST /resume (or a cancel, which ends the job) changes its status. The time spent
        # paused does not count against the job's time limit.
        left = self._entry.suspend() if self._entry is not None else None
        try:
            while True:
                await asyncio.sleep(PAUSE_POLL_SECONDS)
                snapshot = await self._run.status()
                if snapshot is None:
                    raise JobNotFound(self.job_id)
                if snapshot.is_terminal:
                    raise JobIsFinal(self.job_id, snapshot.status.value)
                if snapshot.status is not Status.PAUSED:
                    return
        finally:
            if self._entry is not None:
                self._entry.resume(left)


class RunEntry:
    """A run under way in this worker process: its task, and whether it was superseded."""

    __slots__ = ("deadline", "run", "superseded", "task")

    def __init__(self, run: Run, task: asyncio.Task[Any] | None) -> None:
        self.run = run
        self.task = task
        self.superseded = False
        self.deadline: asyncio.Timeout | None = None

    def suspend(self) -> float | None:
        """Stop the run's clock (it is paused); returns the time it had left."""
        deadline = self.deadline
        when = None if deadline is None or deadline.expired() else deadline.when()
        if deadline is None or when is None:
            return None
        deadline.reschedule(None)
        return max(0.0, when - asyncio.get_running_loop().time())

    def resume(self, left: float | None) -> None:
        """Start the run's clock again with the time it had left when it was suspended."""
        if self.deadline is not None and left is not None and not self.deadline.expired():
            self.deadline.reschedule(asyncio.get_running_loop().time() + left)

    def supersede(self) -> None:
        """Stop the run: the job was declared lost here and runs again elsewhere."""
        if not self.superseded and self.task is not None:
            self.superseded = True
            self.task.cancel()


class Runs:
    """The runs under way in this worker process, by job id."""

    def __init__(self) -> None:
        self._entries: dict[str, RunEntry] = {}

    def add(self, run: Run) -> RunEntry:
        entry = RunEntry(run, asyncio.current_task())
        self._entries[run.job_id] = entry
        return entry

    def remove(self, entry: RunEntry) -> None:
        if self._entries.get(entry.run.job_id) is entry:
            del self._entries[entry.run.job_id]

    def get(self, job_id: str) -> RunEntry | None:
        return self._entries.get(job_id)

    def job_ids(self) -> set[str]:
        return set(self._entries)


@dataclass(frozen=True, slots=True)
class WorkerRuntime:
    """What every run of a worker process shares, kept in ARQ's ``ctx`` at startup."""

    batch: WriteBatch
    worker_id: str
    runs: Runs
    queue_name: str = default_queue_name


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

    def log(self, message: str, level: str = "info") -> None:
        """Like ``JobContext.log``, from the job's thread."""
        coroutine = self._context.log(message, level)
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def output(self, data: Any) -> None:
        """Like ``JobContext.output``, from the job's thread."""
        coroutine = self._context.output(data)
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
    # are recovered by the heartbeats (jobhub/worker/recovery.py), not by ARQ's in-progress expiry.
    # (ARQ's type for a job function does not know positional-only parameters.)
    return func(run, name=function.name, timeout=ARQ_TIMEOUT, max_tries=tries)  # type: ignore[arg-type]


async def after_job_end(ctx: dict[str, Any]) -> None:
    """ARQ's ``after_job_end``: once ARQ has ended a superseded run's bookkeeping, put back
    what of the newer run's it deleted (``Run.keep_newer``)."""
    stale = cast(Run | None, ctx.get(SUPERSEDED))
    if stale is None:
        return
    job_id = stale.job_id
    try:
        # ARQ's in-progress keys live as long as its time limit, plus 10 s (arq.worker).
        kept = await stale.keep_newer(int((ARQ_TIMEOUT + 10) * 1000))
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
