"""What a job function sees: its ``JobContext`` (or, for a blocking function, its
``ThreadJobContext``) to report progress and write output.

    @job("reports.build")
    async def build(job: JobContext, pages: int) -> dict[str, int]:
        for page in range(1, pages + 1):
            await render(page)
            await job.report(100 * page / pages, f"page {page}/{pages}")
        return {"pages": pages}
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import msgspec

from jobhub.core.exceptions import InvalidProgress, JobIsFinal, JobNotFound, WrongStatus
from jobhub.core.snapshot import Status, utcnow
from jobhub.lifecycle.runs import Run

if TYPE_CHECKING:
    from jobhub.worker.runs import RunEntry

__all__ = ["LOG_LEVELS", "PAUSE_POLL_SECONDS", "JobContext", "ThreadJobContext"]

PAUSE_POLL_SECONDS = 0.2
"""How often a paused job looks whether it was resumed."""

LOG_LEVELS = ("debug", "info", "warning", "error")

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
