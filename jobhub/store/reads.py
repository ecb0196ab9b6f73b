"""Snapshot reads of many streams, coalesced: one Redis round trip per moment, not per read.

Every stream open (and every resync after a reconnect) reads the snapshots of its jobs.
Read one by one, a burst of 3,000 opens queues 3,000 reads for the web process's few pooled
connections, and those that wait longer than the pool's timeout fail: measured at 3,000
EventSources opening at once, a third were refused with 503. Here the reads asked for while
the event loop runs one step go out together in one round trip (each job once), and while
that batch is in flight the next one collects, so a burst costs a handful of round trips
and holds one pooled connection at a time.

A read waits; it does not time out. A batch that fails for want of a connection is sent
again for as long as Redis is up (``until_up`` returns), and fails, with
``ServiceUnavailable``, only when ``until_up`` says Redis stayed unreachable.

    reads = Reads(read_many, until_up)      # read_many: job ids -> one value per id
    [snapshot] = await reads.get_many(["job-1"])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobhub.core.exceptions import ServiceUnavailable

__all__ = ["Reads"]

logger = logging.getLogger("jobhub.reads")

T = TypeVar("T")

# Pauses between tries of a batch while Redis is up but the read failed (the pool was busy
# past its timeout, or a connection broke just now): short, since Redis is there.
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0

# Failures worth another try: the connection, not the command. BlockingConnectionPool
# raises ConnectionError when no connection came free in time.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


class Reads(Generic[T]):
    """Coalesces ``read_many`` calls: see the module docstring."""

    def __init__(
        self,
        read_many: Callable[[list[str]], Awaitable[list[T]]],
        until_up: Callable[[], Awaitable[None]],
    ) -> None:
        self._read_many = read_many
        self._until_up = until_up
        # Each waiting caller: the ids it asked for, and the future of its answer. A future
        # of its own, so that a caller that goes away (its client hung up) cancels only
        # its own wait, never the read others share.
        self._waiting: list[tuple[Sequence[str], asyncio.Future[list[T]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def get_many(self, ids: Sequence[str]) -> list[T]:
        """``read_many(ids)``, sent together with every other read asked for meanwhile."""
        future: asyncio.Future[list[T]] = asyncio.get_running_loop().create_future()
        self._waiting.append((ids, future))
        if self._task is None:
            # Started, not run: it first runs after every read asked for in this same
            # step of the event loop has joined the batch.
            self._task = asyncio.create_task(self._send(), name="jobhub-reads")
        return await future

    async def aclose(self) -> None:
        """Stop; reads still waiting fail with ``ServiceUnavailable``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail(self._waiting, ServiceUnavailable("the server is shutting down"))
        self._waiting = []

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._answer(batch)
                except BaseException as exc:
                    self._fail(batch, exc)  # no caller is left waiting, whatever happened
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._task = None

    async def _answer(self, batch: list[tuple[Sequence[str], asyncio.Future[list[T]]]]) -> None:
        ids = list(dict.fromkeys(i for wanted, _ in batch for i in wanted))
        read = await self._read(ids, batch)
        if read is not None:
            values = dict(zip(ids, read, strict=True))
            for wanted, future in batch:
                if not future.done():
                    future.set_result([values[i] for i in wanted])

    async def _read(
        self, ids: list[str], batch: list[tuple[Sequence[str], asyncio.Future[list[T]]]]
    ) -> list[T] | None:
        backoff = _BACKOFF_FIRST
        while True:
            try:
                return await self._read_many(ids)
            except _TRANSIENT as exc:
                logger.info("reading %d snapshots failed (%s); trying again", len(ids), exc)
            if all(future.done() for _, future in batch):
                return None  # every caller went away: nobody to read for
            await self._until_up()  # raises ServiceUnavailable if Redis stays unreachable
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    @staticmethod
    def _fail(
        batch: list[tuple[Sequence[str], asyncio.Future[list[T]]]], cause: BaseException
    ) -> None:
        for _, future in batch:
            if future.done():
                continue
            error: BaseException
            # An exception of its own per caller where it is ours to make: one instance
            # raised in many tasks would collect all of their tracebacks.
            if isinstance(cause, ServiceUnavailable):
                error = ServiceUnavailable(cause.detail)
            elif isinstance(cause, RedisError):
                error = ServiceUnavailable(f"Redis is unavailable: {cause}")
            elif isinstance(cause, asyncio.CancelledError):
                error = ServiceUnavailable("the server is shutting down")
            else:
                error = cause  # a bug, not an outage: let it be seen as what it is
            if error is not cause:
                error.__cause__ = cause
            future.set_exception(error)
