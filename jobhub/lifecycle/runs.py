"""One run of a job on a worker: its writes, each planned by the lifecycle table and fenced by
the run's token.

The run's own writes (start excepted) carry its token and are refused once it is not the
job's newest run (``RunSuperseded``): a worker that stalled past the lost-worker window and
wakes up can no longer overwrite the attempt that replaced it. Nor can its ARQ: the stale run
ends as ``RetryJob``, the one end after which ARQ keeps the job's record, queue entry and
result as they are, and the one key ARQ still deletes, the job's in-progress key (by then the
newer run's), is put back (``Run.keep_newer``), the job's queue entry parked out of every
poll's reach meanwhile. Each write of a run carries its number too, so that one sent again
after a failover is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from jobhub.core.metrics import WorkerMetrics
from jobhub.core.snapshot import JobError, Snapshot, utcnow
from jobhub.lifecycle.arq import DEFAULT_QUEUE, ArqQueue, end_superseded
from jobhub.lifecycle.table import Party
from jobhub.lifecycle.transitions import Move, move
from jobhub.store.writes import WriteBatch

__all__ = ["NO_RUN", "OUTPUT_BACKLOG", "PARK_MS", "Run", "new_run_token"]

NO_RUN = "none"
"""The run token of a job that no run holds (new tokens are hex: they never equal it)."""


def new_run_token() -> str:
    return secrets.token_hex(8)


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
        queue_name: str = DEFAULT_QUEUE,
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
        step = move("start", Party.WORKER,
                    {"percent": 0.0, "message": "started", "attempt": self.attempt})  # fmt: skip
        hidden = {"run": self.token, "worker": self.worker_id, "started_at": utcnow()}
        return self._batch.submit(
            self.job_id, step.patch, function=function, only_from=step.sources, hidden=hidden,
            once=self._once(),
        )  # fmt: skip

    async def report(self, percent: float, message: str) -> bytes:
        """Raises ``WrongStatus`` (paused: the caller waits), ``JobIsFinal`` or
        ``RunSuperseded``."""
        return await self._write(move("report", Party.RUN,
                                      {"percent": percent, "message": message}))  # fmt: skip

    async def requeue(self, message: str) -> bytes:
        patch = {"attempt": self.attempt + 1, "percent": 0.0, "message": message}
        return await self._write(move("requeue", Party.RUN, patch))

    async def finish(self, result: Any) -> bytes:
        """Raises ``TypeError``/``ValueError`` (nothing stored) for a result JSON cannot
        carry."""
        patch = {"percent": 100.0, "message": "finished", "result": result}
        return await self._write(move("finish", Party.RUN, patch))

    async def fail(self, error: JobError) -> bytes:
        return await self._write(move("fail", Party.RUN, {"error": error}))

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
        return end_superseded()

    async def keep_newer(self, held_ttl_ms: int) -> bool:
        """Once ARQ has ended this superseded run: put the newer run's queue entry back where
        it was, and the in-progress key ARQ deleted for this run, which was the newer run's,
        so that no worker starts the job a third time while the newer run is under way.
        Returns whether the key was put back."""
        return await self._newer_run("keep", held_ttl_ms)

    async def _newer_run(self, step: str, amount: int) -> bool:
        job_id = self.job_id
        arq = ArqQueue.run_keys_of(job_id, self.queue_name)
        return await self._batch.store.newer_run(
            job_id, step, self.token, arq, [NO_RUN, job_id, amount]
        )

    @property
    def metrics(self) -> WorkerMetrics | None:
        return self._batch.metrics

    async def _write(self, step: Move) -> bytes:
        return await self._batch.submit(
            self.job_id, step.patch, only_from=step.sources, run=self.token, once=self._once()
        )
