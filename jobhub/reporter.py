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

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from arq.worker import Function, func

from .exceptions import InvalidProgress, JobIsFinal, JobNotFound
from .snapshot import JobError, Snapshot, Status
from .store import Store

__all__ = ["STORE", "JobContext", "JobFunction", "job", "lifecycle"]

logger = logging.getLogger("jobhub.worker")

STORE = "jobhub.store"
"""Key of the worker's ``Store`` in ARQ's ``ctx``, put there at worker startup."""

JobCoroutine = Callable[..., Awaitable[Any]]


class JobContext:
    """Handed to a job function as its first argument."""

    def __init__(self, store: Store, snapshot: Snapshot, ctx: dict[str, Any]) -> None:
        self._store = store
        self._snapshot = snapshot
        self.ctx = ctx
        """ARQ's job context (``job_id``, ``job_try``, ``redis``, …)."""

    @property
    def job_id(self) -> str:
        return self._snapshot.job_id

    @property
    def attempt(self) -> int:
        return self._snapshot.attempt

    @property
    def snapshot(self) -> Snapshot:
        """The last snapshot this job wrote."""
        return self._snapshot

    async def report(self, percent: float, message: str = "") -> Snapshot:
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
        value = float(percent)

        def running(s: Snapshot) -> Snapshot:
            return msgspec.structs.replace(s, status=Status.RUNNING, percent=value, message=message)

        return await self._write(running)

    async def _write(self, change: Callable[[Snapshot], Snapshot]) -> Snapshot:
        self._snapshot = await self._store.update(self.job_id, change, self._snapshot)
        return self._snapshot


@dataclass(frozen=True, slots=True)
class JobFunction:
    """A job function and how it is registered with ARQ."""

    name: str
    coroutine: JobCoroutine
    timeout: float | None = None
    max_tries: int | None = None

    async def __call__(self, job: JobContext, *args: Any, **kwargs: Any) -> Any:
        return await self.coroutine(job, *args, **kwargs)


def job(
    name: str, *, timeout: float | None = None, max_tries: int | None = None
) -> Callable[[JobCoroutine], JobFunction]:
    """Declare a job function under the name clients enqueue it by."""

    def register(coroutine: JobCoroutine) -> JobFunction:
        return JobFunction(name, coroutine, timeout, max_tries)

    return register


def lifecycle(function: JobFunction) -> Function:
    """The ARQ function that runs ``function`` between a ``started`` and a terminal write."""

    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        store = cast(Store, ctx[STORE])
        job_id = cast(str, ctx["job_id"])
        attempt = cast(int, ctx["job_try"])

        def started(s: Snapshot) -> Snapshot:
            return msgspec.structs.replace(
                s, status=Status.STARTED, percent=0.0, message="started", attempt=attempt
            )

        try:
            snapshot = await store.update(job_id, started)
        except JobNotFound:
            # Enqueued with ARQ directly rather than through the API: give it a history too.
            await store.create(Snapshot.queued(job_id, function.name))
            snapshot = await store.update(job_id, started)
        except JobIsFinal as exc:
            logger.info("job %s is already %s; not running it", job_id, exc.status)
            return None
        context = JobContext(store, snapshot, ctx)

        try:
            result = await function.coroutine(context, *args, **kwargs)
        except Exception as exc:
            await _end(context, Status.FAILED, error=JobError(type(exc).__name__, str(exc)))
            raise
        try:
            await _end(context, Status.FINISHED, result=result)
        except TypeError as exc:
            # msgspec could not encode the result: say so in the snapshot rather than
            # leave the job looking unfinished.
            detail = f"the job's result is not JSON-serializable: {exc}"
            await _end(context, Status.FAILED, error=JobError("TypeError", detail))
            raise TypeError(detail) from exc
        return result

    return func(run, name=function.name, timeout=function.timeout, max_tries=function.max_tries)


async def _end(
    context: JobContext, status: Status, *, result: Any = None, error: JobError | None = None
) -> None:
    def end(s: Snapshot) -> Snapshot:
        percent = 100.0 if status is Status.FINISHED else s.percent
        message = status.value if status is Status.FINISHED else s.message
        return msgspec.structs.replace(
            s, status=status, percent=percent, message=message, result=result, error=error
        )

    try:
        await context._write(end)
    except JobIsFinal as exc:
        logger.info(
            "job %s ended as %s before it could be marked %s", context.job_id, exc.status, status
        )
