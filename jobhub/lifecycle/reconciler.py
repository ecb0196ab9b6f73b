"""The reconciler: no job escapes to a state that never ends.

ARQ can end a job without jobhub's wrapper ever running: the worker that took it lacks its
function (a rolling deploy, a worker started with other settings), the job waited past its
expiry, or it ran out of tries. A job can also end its run while its own last write fails.
In each case ARQ drops the job from its queue while the snapshot still says ``queued``.

One worker at a time (a lease in Redis) walks the jobs not yet ended, a page per heartbeat,
oldest first, and for each ``queued`` one created more than ``grace`` seconds ago asks ARQ
whether it still holds it. If not, ``Lifecycle.settle`` ends it with an error that says what
happened (``FunctionNotFound``, ``Expired``, ``RetriesExhausted``, ``Lost``), or, when the
worker that took it lacked its function and a live worker offers it, queues it again for
that one. A queued job that ARQ marked in progress (its in-progress key) longer than
``mark_grace`` ago, with no run started since, had its mark set by a transaction whose
reply the worker lost to a dropped connection: no run will ever take it up, so the mark
is taken back and the next poll starts the job. Jobs at work are recovery's
(jobhub/worker/recovery.py): their worker is alive, or it is lost and recovery re-queues them. It
also looks, a slice per heartbeat, for jobs enqueued with ARQ directly that ARQ failed
before any jobhub code ran, and gives them a snapshot.

    reconciler = Reconciler(lifecycle, registry, redis, worker_id)
    settled = await reconciler.run_once()
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from redis.asyncio import Redis

from jobhub.core import keys
from jobhub.core.logs import job
from jobhub.core.snapshot import Status, decode_head
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.store.lua import RENEW_LEASE
from jobhub.store.registry import Registry

__all__ = ["Reconciler"]

logger = logging.getLogger("jobhub.reconciler")


class Reconciler:
    def __init__(
        self,
        lifecycle: Lifecycle,
        registry: Registry,
        redis: Redis,
        worker_id: str,
        *,
        grace: float = 1.0,
        mark_grace: float = 5.0,
        page: int = 500,
        lease: float = 10.0,
    ) -> None:
        self._lifecycle = lifecycle
        self._registry = registry
        self._worker_id = worker_id
        self._grace_ms = int(grace * 1000)
        self._mark_grace_ms = int(mark_grace * 1000)
        self._page = page
        self._lease_ms = int(lease * 1000)
        self._lease = redis.register_script(RENEW_LEASE)
        self._offset = 0
        self._scan = 0

    async def run_once(self) -> int:
        """One page of the walk, if this worker holds the lease; returns how many jobs it
        changed."""
        if not await self._lease(keys=[keys.RECONCILER], args=[self._worker_id, self._lease_ms]):
            return 0
        changed = await self._adopt()
        store = self._lifecycle.store
        before = int(time.time() * 1000) - self._grace_ms
        job_ids = await store.active_jobs(
            created_before_ms=before, offset=self._offset, count=self._page
        )
        self._offset = 0 if len(job_ids) < self._page else self._offset + len(job_ids)
        if not job_ids:
            return changed
        datas = await store.get_many(job_ids)
        heads = [None if data is None else decode_head(data) for data in datas]
        gone = [job_id for job_id, head in zip(job_ids, heads, strict=True) if head is None]
        if gone:
            await store.forget_active(gone)  # vanished (deleted, or Redis lost them)
        queued = [
            job_id
            for job_id, head in zip(job_ids, heads, strict=True)
            if head is not None and head.status is Status.QUEUED
        ]
        views = await self._lifecycle.inspect(queued)
        for job_id, view in zip(queued, views, strict=True):
            if view.queued:
                if await self._orphan_mark(job_id, view.marked_ms_ago):
                    changed += 1
                continue
            snapshot = await store.read(job_id)
            if snapshot is None:
                continue
            offered = await self._registry.is_offered(snapshot.function)
            done = await self._lifecycle.settle(job_id, view, offered=offered)
            if done is not None:
                changed += 1
                logger.warning("job %s: the queue had ended it; %s", job_id, done,
                               extra=job(job_id))  # fmt: skip
        return changed

    async def _orphan_mark(self, job_id: str, marked_ms_ago: int | None) -> bool:
        """Take back the in-progress mark of a queued job that no run took up (see the
        module docstring); returns whether it did."""
        if marked_ms_ago is None or marked_ms_ago < self._mark_grace_ms:
            return False
        snapshot = await self._lifecycle.store.read(job_id)
        if snapshot is None or snapshot.status is not Status.QUEUED:
            return False
        marked_at_ms = time.time() * 1000 - marked_ms_ago
        if datetime.fromisoformat(snapshot.updated_at).timestamp() * 1000 >= marked_at_ms:
            return False  # queued again after the mark (a Retry): its run ends it
        if not await self._lifecycle.release_mark(job_id, snapshot.seq):
            return False
        logger.warning("job %s: marked in progress %.1f s ago, but no run took it up; "
                       "released to the queue", job_id, marked_ms_ago / 1000,
                       extra=job(job_id))  # fmt: skip
        return True

    async def _adopt(self) -> int:
        self._scan, found = await self._lifecycle.adoptable(self._scan, 1000)
        adopted = 0
        for job_id, result in found:
            if await self._lifecycle.adopt(job_id, result):
                adopted += 1
                logger.warning("job %s: enqueued directly and ended by the queue; adopted",
                               job_id, extra=job(job_id))  # fmt: skip
        return adopted
