"""A worker's watch over itself and the others: heartbeats, lost workers, superseded runs.

ARQ alone re-runs the job of a killed worker only once its in-progress key expires, after
the job's whole timeout, and meanwhile the job's snapshot would say ``running`` forever.
Here, every ``heartbeat`` seconds, each worker:

1. beats (jobhub/store/registry.py): renews its alive key (it expires after ``lost_after``),
   joins the set of workers again and stamps its functions, so that neither a worker once
   declared lost nor Redis losing its data leaves anyone unwatched or any function refused;
2. stops its own runs that were declared lost meanwhile (a worker stalled past the window,
   by SIGSTOP or by blocking CPU in an ``async def`` job, wakes up to find its jobs claimed
   and running elsewhere): their writes are fenced off already, and now their tasks end;
   and settles jobs it holds whose run ended without a word;
3. recovers every job of every worker whose alive key expired: each is claimed by exactly
   one survivor and, through ``Lifecycle.lose``, re-queued if it has tries left (attempt + 1)
   or failed with ``WorkerLost``;
4. reconciles, if it holds the reconciler lease (jobhub/lifecycle/reconciler.py).

So a lost job is recovered within ``lost_after`` + ``heartbeat`` seconds (6 s by default),
plus the queue poll; this needs at least one live worker. Redis errors are logged and the
next beat tries again: the loop never ends while the worker runs.

    recovery = Recovery(lifecycle, registry, reconciler, runs, worker_id, functions=...)
    await recovery.start()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from redis.exceptions import RedisError

from jobhub.core.logs import job
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.lifecycle.reconciler import Reconciler
from jobhub.store.registry import Registry
from jobhub.worker.runs import Runs

__all__ = ["Recovery"]

logger = logging.getLogger("jobhub.recovery")


class Recovery:
    def __init__(
        self,
        lifecycle: Lifecycle,
        registry: Registry,
        reconciler: Reconciler,
        runs: Runs,
        worker_id: str,
        *,
        functions: Sequence[str],
        tries: Mapping[str, int],
        default_tries: int,
        heartbeat: float = 1.0,
        lost_after: float = 5.0,
    ) -> None:
        self._lifecycle = lifecycle
        self._registry = registry
        self._reconciler = reconciler
        self._runs = runs
        self.worker_id = worker_id
        self._functions = list(functions)
        self._tries = tries
        self._default_tries = default_tries
        self._heartbeat = heartbeat
        self._lost_after = lost_after
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._registry.beat(self.worker_id, self._functions)
        self._task = asyncio.create_task(self._run(), name="jobhub-recovery")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self._registry.leave(self.worker_id)
        except (RedisError, OSError) as exc:
            logger.warning("could not say this worker leaves (%s)", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                logger.warning("heartbeat or recovery failed (%s); trying again", exc)
            except Exception:
                # Whatever went wrong, the heartbeat must go on: a worker that stops beating
                # is declared lost, and its jobs are taken from it.
                logger.exception("heartbeat or recovery failed; trying again")

    async def tick(self) -> int:
        """One heartbeat's work; returns how many jobs of lost workers it recovered."""
        held = await self._registry.beat(self.worker_id, self._functions)
        await self._check_own(held)
        recovered = await self.recover_lost()
        await self._reconciler.run_once()
        return recovered

    async def _check_own(self, held: set[str]) -> None:
        store = self._lifecycle.store
        for job_id in self._runs.job_ids() - held:
            entry = self._runs.get(job_id)
            if entry is None:
                continue
            [run] = await store.hidden(job_id, "run")
            if run is not None and run != entry.run.token:
                # Not this run's any more: recovered elsewhere while this worker was silent.
                snapshot = await store.read(job_id)
                if snapshot is not None and snapshot.is_terminal:
                    continue  # ended (canceled): ARQ's abort stops the run
                entry.supersede()
        for job_id in held - self._runs.job_ids():
            # This worker holds the job, but no run of it is under way here: the run ended
            # without its final write (Redis was unreachable, or the task was cancelled).
            if await self._lifecycle.lose(
                job_id,
                self.worker_id,
                tries=await self._tries_of(job_id),
                reason=f"its run on worker {self.worker_id} ended without storing its end",
            ):
                logger.warning("job %s: its run here ended silently; recovered", job_id,
                               extra=job(job_id))  # fmt: skip
            elif job_id not in self._runs.job_ids():
                # Not at work here any more (canceled, or taken over elsewhere): the writes
                # that ended it were not this worker's, so nothing took it off its list.
                await self._registry.release(self.worker_id, job_id)

    async def recover_lost(self) -> int:
        """Recover the jobs of every worker whose heartbeat expired; returns how many."""
        recovered = 0
        for worker_id in await self._registry.lost_workers(self.worker_id):
            for job_id in await self._registry.claim(worker_id):
                lost = f"its worker {worker_id} stopped (no heartbeat for {self._lost_after:g} s)"
                if await self._lifecycle.lose(
                    job_id,
                    worker_id,
                    tries=await self._tries_of(job_id),
                    reason=lost,
                ):
                    recovered += 1
                    logger.warning(
                        "job %s recovered from lost worker %s", job_id, worker_id, extra=job(job_id)
                    )
            await self._registry.drop(worker_id)
        return recovered

    async def _tries_of(self, job_id: str) -> int:
        snapshot = await self._lifecycle.store.read(job_id)
        if snapshot is None:
            return self._default_tries
        return self._tries.get(snapshot.function, self._default_tries)
