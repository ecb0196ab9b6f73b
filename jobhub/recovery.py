"""Worker heartbeats, and recovery of the jobs of a worker that stopped beating.

ARQ alone re-runs the job of a killed worker only once its in-progress key expires, after
the job's whole timeout, and meanwhile the job's snapshot would say ``running`` forever.
Here every worker renews ``jobhub:worker:<id>`` every ``heartbeat`` seconds (it expires
after ``lost_after``), the snapshot writes keep each job in its worker's set while it is at
work, and every worker looks each heartbeat for workers whose key has expired. Each job of
such a worker is claimed by exactly one survivor (SREM) and then:

- re-queued, if it has tries left: its snapshot says ``queued`` with ``attempt`` + 1, and
  ARQ's in-progress key is deleted so that ARQ runs it again at once (ARQ's own
  at-least-once retry, only sooner);
- else ``failed`` with error type ``WorkerLost``, and removed from ARQ's queue.

So a lost job is recovered within ``lost_after`` + ``heartbeat`` seconds (6 s by default),
plus the queue poll; this needs at least one live worker.

    recovery = Recovery(redis, store, worker_id, tries={"demo.count": 5}, queue_name=...)
    await recovery.start()
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

import msgspec
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import keys
from .exceptions import JobhubError
from .logs import job
from .snapshot import AT_WORK, JobError, Status
from .store import Store

__all__ = ["Recovery", "new_worker_id"]

logger = logging.getLogger("jobhub.recovery")


def new_worker_id() -> str:
    """Unique per worker process, and readable in logs: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Recovery:
    def __init__(
        self,
        redis: Redis,
        store: Store,
        worker_id: str,
        *,
        tries: dict[str, int],
        default_tries: int,
        queue_name: str,
        heartbeat: float = 1.0,
        lost_after: float = 5.0,
    ) -> None:
        self._redis = redis
        self._store = store
        self.worker_id = worker_id
        self._tries = tries
        self._default_tries = default_tries
        self._queue = queue_name
        self._heartbeat = heartbeat
        self._lost_after = lost_after
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._beat()
        await self._redis.sadd(keys.WORKERS, self.worker_id)  # type: ignore[misc]
        self._task = asyncio.create_task(self._run(), name="jobhub-recovery")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _beat(self) -> None:
        alive = keys.worker_alive(self.worker_id)
        await self._redis.set(alive, "1", px=int(self._lost_after * 1000))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self._beat()
                await self.recover_lost()
            except (RedisError, OSError) as exc:
                logger.warning("heartbeat or recovery failed (%s); trying again", exc)

    async def recover_lost(self) -> int:
        """Recover the jobs of every worker whose heartbeat expired; returns how many."""
        recovered = 0
        workers = await self._redis.smembers(keys.WORKERS)  # type: ignore[misc]
        for raw in workers:
            worker_id = raw.decode()
            if worker_id == self.worker_id or await self._redis.exists(
                keys.worker_alive(worker_id)
            ):
                continue
            held = keys.worker_jobs(worker_id)
            for member in await self._redis.smembers(held):  # type: ignore[misc]
                if await self._redis.srem(held, member):  # type: ignore[misc]
                    # Claimed: no other worker recovers this one.
                    recovered += await self._recover(msgspec.json.decode(member), worker_id)
            if not await self._redis.scard(held):  # type: ignore[misc]
                await self._redis.srem(keys.WORKERS, worker_id)  # type: ignore[misc]
        return recovered

    async def _recover(self, job_id: str, worker_id: str) -> int:
        snapshot = await self._store.read(job_id)
        if snapshot is None or snapshot.status not in AT_WORK:
            return 0  # it ended, or is queued, meanwhile: nothing to recover
        tries = self._tries.get(snapshot.function, self._default_tries)
        lost = f"its worker {worker_id} stopped (no heartbeat for {self._lost_after:g} s)"
        try:
            if snapshot.attempt < tries:
                message = f"{lost}; try {snapshot.attempt + 1} of {tries} re-queued"
                patch = {
                    "status": Status.QUEUED,
                    "attempt": snapshot.attempt + 1,
                    "percent": 0.0,
                    "message": message,
                }
                await self._store.write(job_id, patch, only_from=AT_WORK)
                # The job is still in ARQ's queue; without its in-progress key any worker
                # takes it at the next poll.
                await self._redis.delete(in_progress_key_prefix + job_id)
            else:
                error = JobError("WorkerLost", f"{lost} on try {snapshot.attempt} of {tries}")
                await self._store.write(
                    job_id, {"status": Status.FAILED, "error": error}, only_from=AT_WORK
                )
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zrem(self._queue, job_id)
                    pipe.delete(in_progress_key_prefix + job_id, job_key_prefix + job_id)
                    await pipe.execute()
        except JobhubError as exc:
            logger.info("job %s changed while being recovered: %s", job_id, exc, extra=job(job_id))
            return 0
        logger.warning("job %s recovered from lost worker %s", job_id, worker_id, extra=job(job_id))
        return 1
