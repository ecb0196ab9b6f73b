"""The lifecycle's operations: create, retry, delete, cancel, pause and resume a job, and
what an operator reads of it; recovery's and the reconciler's repairs are in
``repairs.py``. Each goes through the lifecycle table (``table.py``, ``transitions.move``),
and ARQ's side of each through its adapter (``arq.py``).

A deleted job leaves a tombstone for longer than ARQ keeps a result: a run still ending when
its job was deleted cannot bring it back through the reconciler's adoption, and a new job
under the same id clears it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from jobhub.core.exceptions import IdTaken, InvalidRequest, JobIsFinal, JobNotFound, WrongStatus
from jobhub.core.snapshot import Snapshot, decode, decode_head
from jobhub.lifecycle.arq import ArqQueue
from jobhub.lifecycle.repairs import Repairs
from jobhub.lifecycle.table import ACTIONS_BY_STATUS, TABLE, Party, actions
from jobhub.lifecycle.transitions import in_effect, move
from jobhub.store.store import Store

__all__ = ["MAX_ARGUMENTS_BYTES", "Lifecycle", "retry_id"]


def retry_id(job_id: str) -> str:
    """The id of ``job_id``'s retry: 128 bits derived from it, in a job id's alphabet."""
    digest = hashlib.blake2b(f"retry:{job_id}".encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Lifecycle(Repairs):
    """The transitions of jobs, applied through ``store``, and ARQ's side of each.

    lifecycle = Lifecycle(redis, store, queue_name="arq:queue")
    created, data = await lifecycle.create("demo.count", [], {"steps": 5})
    data = await lifecycle.cancel(job_id)
    """

    def __init__(self, redis: Redis, store: Store, *, queue_name: str) -> None:
        self.store = store
        self.arq = ArqQueue(redis, queue_name=queue_name)
        self.queue_name = queue_name

    # -- operator and web side ------------------------------------------------------------

    async def create(
        self,
        function: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        job_id: str | None = None,
        callback_url: str | None = None,
        defer_seconds: float = 0.0,
        retry_of: str | None = None,
        tags: Sequence[str] = (),
    ) -> tuple[str, bool, bytes]:
        """Store the queued snapshot and put the job in ARQ's queue, in one atomic step.

        With ``defer_seconds`` the job stays queued until then (its snapshot's ``start_at``
        says when). Returns ``(job_id, created, data)``; ``created`` is false when the id
        already names a job (its snapshot is returned). Raises ``QueueHoldsId`` when ARQ still
        holds a job or result under the id.
        """
        # 128 random bits in the id's own alphabet: unguessable, and valid as a client id too.
        job_id = job_id or secrets.token_urlsafe(16)
        move("create", Party.CLIENT)  # the store's create applies it: only where no job is
        now_ms = int(time.time() * 1000)
        defer_ms = int(defer_seconds * 1000)
        enqueue = self.arq.enqueue(job_id, function, args, kwargs, now_ms=now_ms, defer_ms=defer_ms)
        hidden = {"arguments": _arguments(args, kwargs)}
        if callback_url is not None:
            hidden["callback"] = msgspec.json.encode(callback_url)
        start_at = None
        if defer_ms:
            start_at = (
                datetime.fromtimestamp((now_ms + defer_ms) / 1000, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        queued = Snapshot.queued(
            job_id, function, start_at=start_at, retry_of=retry_of, tags=list(tags)
        )
        created, data = await self.store.create(queued, hidden=hidden, enqueue=enqueue)
        if not created and retry_of is not None and decode(data).retry_of != retry_of:
            # The retry's id is derived, not secret: answering what holds it would pass a
            # job someone started there off as the retry (and hand out its token).
            raise IdTaken(f"the id of {retry_of!r}'s retry, {job_id!r}, names another job")
        return job_id, created, data

    async def retry(self, job_id: str) -> tuple[str, bool, bytes]:
        """Run an ended job again as a new job (a new id) with the same function and
        arguments; the new snapshot's ``retry_of`` names the old one, which keeps its final
        state. Returns ``(new job id, created, its snapshot)``.

        A job is retried once: its retry's id is derived from its own, so asking again (a
        second click, two operators at once) returns that job (``created`` false) instead of
        starting another. To run it once more, retry the retry.

        Raises ``JobNotFound``, ``WrongStatus`` for a job not ended yet, and
        ``InvalidRequest`` when its arguments were too large to keep.
        """
        step = move("retry", Party.OPERATOR)
        snapshot = await self.store.read(job_id)
        if snapshot is None:
            raise JobNotFound(job_id)
        if snapshot.status not in step.sources:
            raise WrongStatus(
                job_id,
                snapshot.status.value,
                f"job {job_id!r} is {snapshot.status.value}: only an ended job can be retried",
            )
        [stored] = await self.store.hidden(job_id, "arguments")
        arguments = msgspec.json.decode(stored) if stored is not None else {}
        if "args" not in arguments:
            raise InvalidRequest(
                f"job {job_id!r} cannot be retried: its arguments were not kept "
                f"(over {MAX_ARGUMENTS_BYTES} bytes, or it was enqueued with ARQ directly)"
            )
        return await self.create(
            snapshot.function,
            arguments["args"],
            arguments["kwargs"],
            job_id=retry_id(job_id),
            retry_of=job_id,
            tags=snapshot.tags,  # a retry stays in the lists of whoever saw the job
        )

    async def delete(self, job_id: str) -> None:
        """Remove an ended job: its snapshot, history, output, deliveries, listing entry and
        ARQ's result. Raises ``JobNotFound``, or ``WrongStatus`` for a job not ended yet
        (cancel it first)."""
        # ARQ's job record stays: a run of the job may still be ending (a canceled job's
        # `finally`), and a new job under the id must not be created while it does (ARQ's end
        # of the old run would delete the new one's record). What ARQ writes for the deleted
        # job later cannot bring it back: the delete leaves a tombstone.
        step = TABLE["delete"]
        status = await self.store.delete(job_id, also=[self.arq.result_key(job_id)])
        if status is None:
            raise JobNotFound(job_id)
        if status not in step.sources:
            raise WrongStatus(
                job_id, status.value, f"job {job_id!r} is {status.value}: cancel it first"
            )

    async def detail(self, job_id: str) -> dict[str, Any]:
        """What an operator asks of a job beyond its snapshot: its arguments, timings,
        worker and tries."""
        data = await self.store.get(job_id)
        if data is None:
            raise JobNotFound(job_id)
        snapshot = decode(data)
        arguments_raw, worker, started_at = await self.store.hidden(
            job_id, "arguments", "worker", "started_at"
        )
        arguments = msgspec.json.decode(arguments_raw) if arguments_raw is not None else None
        ended_at = snapshot.updated_at if snapshot.is_terminal else None
        return {
            "snapshot": msgspec.json.decode(data),
            "actions": actions(snapshot.status),
            "lifecycle": ACTIONS_BY_STATUS,
            "arguments": arguments,
            "worker": worker,
            "timings": {
                "created_at": snapshot.created_at,
                "started_at": started_at,
                "ended_at": ended_at,
                "queued_seconds": _seconds_between(snapshot.created_at, started_at),
                "run_seconds": _seconds_between(started_at, ended_at),
            },
        }

    async def queue_depth(self) -> int:
        """Jobs waiting in ARQ's queue (deferred ones included)."""
        return await self.arq.depth()

    async def cancel(self, job_id: str) -> bytes:
        """The snapshot says ``canceled`` at once; ARQ is asked to abort the job (a queued
        one never starts, a running one is cancelled and its ``finally`` blocks run).

        A job already canceled is answered as it is. Raises ``JobIsFinal`` for a job that
        ended otherwise and ``JobNotFound`` for an unknown one.
        """
        data, changed = await self._apply(job_id, "cancel", {"message": "canceled"})
        if changed:
            await self.arq.abort(job_id)
        return data

    async def pause(self, job_id: str) -> bytes:
        """Cooperative: the job's next progress report waits until it is resumed. A paused
        job is answered as it is."""
        data, _ = await self._apply(job_id, "pause", {"message": "paused"})
        return data

    async def resume(self, job_id: str) -> bytes:
        """A running job (resumed already, or never paused) is answered as it is."""
        data, _ = await self._apply(job_id, "resume", {"message": "resumed"})
        return data

    async def _apply(
        self, job_id: str, operation: str, patch: dict[str, Any]
    ) -> tuple[bytes, bool]:
        """An operator's transition; returns the snapshot and whether it changed the job
        (not, where the operation was already in effect: a second click)."""
        step = move(operation, Party.OPERATOR, patch)
        try:
            return await self.store.write(job_id, step.patch, only_from=step.sources), True
        except (WrongStatus, JobIsFinal):
            current = await self.store.get(job_id)
            if current is not None and in_effect(operation, decode_head(current).status):
                return current, False
            raise


MAX_ARGUMENTS_BYTES = 64 * 1024
"""A job's arguments are kept (for its detail and its retry) up to this size as JSON."""


def _arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    encoded = msgspec.json.encode({"args": args, "kwargs": kwargs})
    if len(encoded) > MAX_ARGUMENTS_BYTES:
        return msgspec.json.encode({"truncated": True, "bytes": len(encoded)})
    return encoded


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    parse = datetime.fromisoformat
    return round((parse(end) - parse(start)).total_seconds(), 6)
