"""Which workers are alive, which jobs each holds, and which functions live workers offer.

Every worker beats every ``JOBHUB_WORKER_HEARTBEAT`` seconds, in one Lua step: it renews its
alive key (which expires after ``JOBHUB_WORKER_LOST_AFTER``), joins the set of workers (so
a worker once declared lost, or every worker after Redis lost its data, is watched again),
and stamps each of its functions with Redis's clock. The web app accepts a function only
while some worker stamped it within the lost-after window, so a function that no live
worker offers any more stops being accepted, and after Redis loses its data every function
is back within one heartbeat. Functions are offered per queue: a worker on another queue
never takes this one's jobs.

    registry = Registry(redis, lost_after=5.0, queue_name="arq:queue")
    held = await registry.beat(worker_id, ["demo.count"])
    await registry.is_offered("demo.count")
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

from jobhub.core import keys
from jobhub.core.snapshot import utcnow
from jobhub.store.lua import BEAT, LIVE, OFFERED, beat_keys

__all__ = ["Registry", "new_worker_id"]


def new_worker_id() -> str:
    """Unique per worker process, and readable in logs: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Registry:
    def __init__(self, redis: Redis, *, lost_after: float, queue_name: str) -> None:
        self._redis = redis
        self._offered_key = keys.offered(queue_name)
        self._lost_after_ms = int(lost_after * 1000)
        self._beat = redis.register_script(BEAT)
        self._offered = redis.register_script(OFFERED)
        self._live = redis.register_script(LIVE)

    async def beat(self, worker_id: str, functions: Sequence[str]) -> set[str]:
        """Say the worker is alive and offers ``functions``; returns the jobs it holds."""
        about = msgspec.json.encode({"functions": sorted(functions), "beat": utcnow()})
        held = await self._beat(
            keys=beat_keys(worker_id, self._offered_key),
            args=[worker_id, self._lost_after_ms, about, *functions],
        )
        return {msgspec.json.decode(member) for member in held}

    async def leave(self, worker_id: str) -> None:
        """A worker shutting down: the others recover what it still holds at once."""
        await self._redis.delete(keys.worker_alive(worker_id))

    async def is_offered(self, function: str) -> bool:
        [found] = await self._offered(
            keys=[self._offered_key], args=[self._lost_after_ms, function]
        )
        return bool(found)

    async def live_functions(self) -> list[str]:
        """Every function some live worker offers, sorted."""
        names = await self._live(keys=[self._offered_key], args=[self._lost_after_ms])
        return sorted(name.decode() for name in names)

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers: id, functions, jobs at work and last beat, sorted by id."""
        members = sorted(m.decode() for m in await self._redis.smembers(keys.WORKERS))  # type: ignore[misc]
        async with self._redis.pipeline(transaction=False) as pipe:
            for worker_id in members:
                pipe.get(keys.worker_alive(worker_id))
                pipe.scard(keys.worker_jobs(worker_id))
            replies = await pipe.execute()
        live = []
        for i, worker_id in enumerate(members):
            about, jobs = replies[2 * i], replies[2 * i + 1]
            if about is None:
                continue  # lost: its alive key expired
            info = msgspec.json.decode(about) if about.startswith(b"{") else {}
            live.append({
                "id": worker_id,
                "functions": info.get("functions", []),
                "jobs": int(jobs),
                "last_beat": info.get("beat"),
            })  # fmt: skip
        return live

    async def lost_workers(self, me: str) -> list[str]:
        """Workers in the set whose alive key has expired (``me`` excepted)."""
        members = [m.decode() for m in await self._redis.smembers(keys.WORKERS)]  # type: ignore[misc]
        others = [m for m in members if m != me]
        if not others:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for worker_id in others:
                pipe.exists(keys.worker_alive(worker_id))
            alive = await pipe.execute()
        return [w for w, up in zip(others, alive, strict=True) if not up]

    async def claim(self, worker_id: str) -> list[str]:
        """Take the jobs a lost worker held: each is claimed by exactly one caller (SREM)."""
        held = keys.worker_jobs(worker_id)
        claimed = []
        for member in await self._redis.smembers(held):  # type: ignore[misc]
            if await self._redis.srem(held, member):  # type: ignore[misc]
                claimed.append(msgspec.json.decode(member))
        return claimed

    async def release(self, worker_id: str, job_id: str) -> None:
        """Take a job off the worker's held jobs: it is no longer at work there (canceled,
        or recovered elsewhere, by writes that were not the worker's own)."""
        await self._redis.srem(keys.worker_jobs(worker_id), msgspec.json.encode(job_id))  # type: ignore[misc]

    async def drop(self, worker_id: str) -> None:
        """Forget a lost worker whose jobs were all claimed (it re-joins if it beats again)."""
        if not await self._redis.scard(keys.worker_jobs(worker_id)):  # type: ignore[misc]
            await self._redis.srem(keys.WORKERS, worker_id)  # type: ignore[misc]
