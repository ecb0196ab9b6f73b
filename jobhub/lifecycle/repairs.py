"""Recovery's and the reconciler's repairs: a lost worker's runs, jobs that ARQ ended
behind jobhub's back, a mark no run took up, jobs only ARQ knew. Each goes through the
lifecycle table (``transitions.move``), and ARQ's side of each through its adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from jobhub.core.exceptions import JobhubError
from jobhub.core.snapshot import AT_WORK, Snapshot, Status
from jobhub.lifecycle.arq import ArqQueue, ArqView, JobResult, failure_of
from jobhub.lifecycle.failures import job_error
from jobhub.lifecycle.runs import NO_RUN
from jobhub.lifecycle.table import Party
from jobhub.lifecycle.transitions import Move, move
from jobhub.store.store import Store

__all__ = ["Repairs"]


class Repairs:
    """What recovery and the reconciler do to jobs (``Lifecycle`` has these too)."""

    store: Store
    arq: ArqQueue

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
            await self.arq.forget(job_id)
            return False
        if snapshot is None or snapshot.status not in AT_WORK or owner != worker_id:
            return False
        if run is None or run == NO_RUN:
            return False
        lost = reason
        try:
            if snapshot.attempt < tries:
                message = f"{lost}; try {snapshot.attempt + 1} of {tries} re-queued"
                patch = {"attempt": snapshot.attempt + 1, "percent": 0.0, "message": message}
                step = move("lose", Party.RECOVERY, patch, target=Status.QUEUED)
                # A run token no run has fences the lost run off at once.
                await self.store.write(
                    job_id, step.patch, only_from=step.sources, run=run, hidden={"run": NO_RUN}
                )
                # The job is still in ARQ's queue; without its in-progress key any worker
                # takes it at the next poll.
                await self.arq.release(job_id)
            else:
                error = job_error("WorkerLost", f"{lost} on try {snapshot.attempt} of {tries}")
                step = move("lose", Party.RECOVERY, {"error": error}, target=Status.FAILED)
                await self.store.write(
                    job_id, step.patch, only_from=step.sources, run=run, hidden={"run": NO_RUN}
                )
                await self.arq.forget(job_id)
        except JobhubError:
            return False  # it changed meanwhile (ended, or a newer run): nothing to do
        return True

    async def inspect(self, job_ids: Sequence[str]) -> list[ArqView]:
        """What ARQ holds of each job, in one round trip (plus one per ended job)."""
        return await self.arq.inspect(job_ids)

    async def release_mark(self, job_id: str, seq: int) -> bool:
        """Take back ARQ's in-progress mark of a job that no run took up: a worker whose
        connection dropped right as Redis ran the transaction that marks the job never
        learned that it had (its ``EXEC`` reply lost), and took the job for one another
        worker runs; the mark would keep every worker from it for ``IN_PROGRESS_MS``.

        Applies only while the job is still queued at ``seq`` (no run started since), in one
        step. Returns whether the mark was taken back: the next poll starts the job."""
        return await self.store.release_mark(job_id, self.arq.in_progress_key(job_id), seq)

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
        result = view.result
        if result is not None and result.success:
            # The job ran and ARQ kept its result, but its own end was never stored.
            try:
                encoded_ok = msgspec.json.encode(result.result) is not None
            except (TypeError, ValueError):
                encoded_ok = False
            step = (
                move("settle", Party.RECONCILER, {"percent": 100.0, "message": "finished",
                     "result": result.result}, target=Status.FINISHED)
                if encoded_ok
                else move("settle", Party.RECONCILER, {"error": job_error(
                    "TypeError", "the job's result is not JSON-serializable")},
                    target=Status.FAILED)
            )  # fmt: skip
            return await self._settle_write(job_id, step, "finished from ARQ's result")
        reason = failure_of(result, view.unreadable)
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
        patch = {"message": "failed", "error": job_error(*reason)}
        step = move("settle", Party.RECONCILER, patch, target=Status.FAILED)
        return await self._settle_write(job_id, step, f"failed: {reason[0]}")

    async def _settle_write(self, job_id: str, step: Move, done: str) -> str | None:
        try:
            await self.store.write(job_id, step.patch, only_from=step.sources)
        except JobhubError:
            return None
        await self.arq.forget(job_id)
        return done

    async def _hand_back(
        self, job_id: str, snapshot: Snapshot, result: JobResult | None, count: int
    ) -> bool:
        if result is None:
            return False
        message = f"handed back: the worker that took it lacks {snapshot.function!r}"
        step = move("hand_back", Party.RECONCILER, {"message": message})
        try:
            await self.store.write(
                job_id, step.patch, only_from=step.sources, hidden={"handbacks": str(count)}
            )
        except JobhubError:
            return False
        await self.arq.requeue(job_id, snapshot.function, result)
        return True

    async def adoptable(self, cursor: int, count: int) -> tuple[int, list[tuple[str, JobResult]]]:
        """Jobs that ARQ failed before any jobhub code ran and that have no snapshot (enqueued
        with ARQ directly, for a function no worker that took it has): one slice of a SCAN
        over ARQ's results. Returns the next cursor (0 at the end) and what was found."""
        cursor, job_ids = await self.arq.results(cursor, count)
        if not job_ids:
            return cursor, []
        exists = await self.store.exist_many(job_ids)
        deleted = await self.store.deleted_many(job_ids)
        # A deleted job's run that was still ending wrote its result after the delete: the
        # delete promised it gone, so it goes.
        await self.arq.drop_results(
            [job_id for job_id, gone in zip(job_ids, deleted, strict=True) if gone]
        )
        adopted = []
        for job_id, known, gone in zip(job_ids, exists, deleted, strict=True):
            if known or gone:
                continue
            result = await self.arq.readable_result(job_id)
            # Only ARQ's own failures: a job that ran through jobhub had a snapshot, and one
            # without it now has expired or was deleted.
            if result is not None and failure_of(result, None)[0] != "Failed":
                adopted.append((job_id, result))
        return cursor, adopted

    async def adopt(self, job_id: str, result: JobResult) -> bool:
        """Give a job that only ARQ knew a snapshot: queued, so that ``settle`` ends it. A job
        deleted meanwhile stays deleted."""
        move("create", Party.RECONCILER)  # the store's create applies it: only where no job is
        snapshot = Snapshot.queued(job_id, result.function)
        created, _ = await self.store.create(snapshot, unless_deleted=True)
        return created
