"""A batch's operations: create it with its children, add children to an open one, seal,
cancel, retry and delete it. Every child's change of status goes through the lifecycle
table (``transitions.move``) and the store's one write step, which moves the batch's
counts in that same step (jobhub/store/lua/batches.py); ARQ's side through its adapter.

A batch's children are created and put in their queue in one script (all or none), so no
crash can leave a child created but not enqueued, or a batch with half of its children.

    batches = BatchLifecycle(lifecycle, BatchStore(redis, result_ttl_seconds=86400))
    batch_id, job_ids, data = await batches.submit([ChildSpec("demo.count")])
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from jobhub.core.exceptions import BatchConflict, BatchNotFound, InvalidRequest
from jobhub.core.snapshot import Snapshot, Status, decode, decode_head, utcnow
from jobhub.lifecycle.lifecycle import Lifecycle, _arguments, retry_id
from jobhub.lifecycle.table import Party
from jobhub.lifecycle.transitions import move
from jobhub.store.batches import BatchStore, NewChild

__all__ = ["CANCEL_PAGE", "BatchLifecycle", "ChildSpec"]

CANCEL_PAGE = 1000
"""Children a batch's cancel (and retry) handles per round trip."""


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child as asked for (already checked by the caller: its function is offered)."""

    function: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    weight: int = 1
    tags: Sequence[str] = ()


class BatchLifecycle:
    """The transitions of batches, their children's through ``lifecycle``."""

    def __init__(self, lifecycle: Lifecycle, store: BatchStore) -> None:
        self.lifecycle = lifecycle
        self.store = store

    async def submit(
        self,
        children: Sequence[ChildSpec],
        *,
        batch_id: str | None = None,
        open_: bool = False,
        callback_url: str | None = None,
    ) -> tuple[str, list[str], bytes]:
        """Create a batch and its children in one step; returns ``(batch id, job ids,
        snapshot JSON)``. ``open_`` keeps it open for ``add`` until ``seal``."""
        batch_id = batch_id or secrets.token_urlsafe(16)
        new = self._children(batch_id, children)
        data = await self.store.create(
            batch_id, new, mode="new", sealed=not open_, now=utcnow(), callback_url=callback_url
        )
        return batch_id, [child.snapshot.job_id for child in new], data

    async def add(self, batch_id: str, children: Sequence[ChildSpec]) -> tuple[list[str], bytes]:
        """Add children to an open batch; ``BatchConflict`` once it is sealed."""
        new = self._children(batch_id, children)
        data = await self.store.create(batch_id, new, mode="add", sealed=False, now=utcnow())
        return [child.snapshot.job_id for child in new], data

    async def seal(self, batch_id: str) -> bytes:
        """No more children: the batch ends once every child has (at once, if they have)."""
        data, _ = await self.store.mark(batch_id, "seal", now=utcnow())
        return data

    async def cancel(self, batch_id: str) -> bytes:
        """Cancel every child not ended yet (each through the lifecycle table, as ``POST
        /jobs/{id}/cancel`` does); the batch ends ``canceled``. A batch that has ended is
        answered as it is."""
        data, _ = await self.store.mark(batch_id, "cancel", now=utcnow())
        if _status_of(data) != "active":
            return data
        step = move("cancel", Party.OPERATOR, {"message": "canceled"})
        store, place = self.lifecycle.store, 0
        while page := await self.store.children(batch_id, after=place, limit=CANCEL_PAGE):
            place = page[-1][0]
            datas = await self.store.snapshots(batch_id, [job_id for _, job_id in page])
            # Only its children: an id of one deleted since may be another user's job now.
            children = [job_id for (_, job_id), data in zip(page, datas, strict=True) if data]
            writes = [
                store.prepare(job_id, step.patch, only_from=step.sources) for job_id in children
            ]
            results = await store.write_many(writes) if writes else []
            # (A child that ended meanwhile answers its error here: it keeps its end.)
            canceled = [
                job_id for job_id, r in zip(children, results, strict=True) if isinstance(r, bytes)
            ]
            await self.lifecycle.arq.abort_many(canceled)
        found = await self.store.get(batch_id)
        if found is None:
            raise BatchNotFound(batch_id)
        return found

    async def retry(self, batch_id: str) -> tuple[list[str], bytes]:
        """Run the failed and canceled children again, each as a new job (``retry_of`` set)
        that takes its place in the batch; the batch is active again until they end. A
        child already retried on its own is left out. Returns the new job ids and the
        batch's snapshot.

        The children are read a page at a time, and a cancel of the batch may go through
        them meanwhile. So that a retry never runs again a part of the children a cancel
        ended, it does not begin to read while a cancel is under way, and the script
        refuses it while one is, or when the batch was canceled after it began to read.
        Such a retry starts over, up to three times."""
        refused = BatchConflict(f"batch {batch_id!r} keeps changing; try again")
        for _ in range(3):
            point = await self.store.retry_point(batch_id)
            if point is None:
                raise BatchNotFound(batch_id)
            read_at, canceling = point
            if canceling:
                # Read now, the children would be a part canceled and a part not yet; and
                # once the cancel has ended the batch, the script's own check of a cancel
                # under way could no longer tell.
                refused = BatchConflict(
                    f"batch {batch_id!r} is being canceled: retry it once it has ended"
                )
                continue
            new = await self._retries(batch_id)
            if not new:
                data = await self.store.get(batch_id)
                if data is None:
                    raise BatchNotFound(batch_id)
                return [], data
            try:
                data = await self.store.create(
                    batch_id, new, mode="retry", sealed=True, now=utcnow(),
                    read_at=read_at,
                )  # fmt: skip
            except BatchConflict as exc:
                refused = exc  # read again: the batch has changed, or is changing
                continue
            return [child.snapshot.job_id for child in new], data
        raise refused

    async def _retries(self, batch_id: str) -> list[NewChild]:
        """A new child for each failed or canceled child, in the batch's order."""
        step = move("retry", Party.OPERATOR)
        store, place, new = self.lifecycle.store, 0, []
        while page := await self.store.children(batch_id, after=place, limit=CANCEL_PAGE):
            place = page[-1][0]
            datas = await self.store.snapshots(batch_id, [job_id for _, job_id in page])
            ended = [
                decode(data) for data in datas
                if data is not None and decode_head(data).status in step.sources
                and decode_head(data).status != Status.FINISHED
            ]  # fmt: skip
            # A child retried on its own (``POST /jobs/{id}/retry``) has its one retry
            # already, outside the batch, under the id a retry here would take: it is left
            # as it is, rather than refusing the retry of every other child with a 409.
            retries = await store.exist_many([retry_id(old.job_id) for old in ended])
            ended = [old for old, retried in zip(ended, retries, strict=True) if not retried]
            # A few round trips per page, not per child: the fewer the script's guard has
            # to cover, the less likely a busy batch changes under the read.
            kept = await store.hidden_many([old.job_id for old in ended], "arguments")
            for old, stored in zip(ended, kept, strict=True):
                job_id = old.job_id
                arguments = msgspec.json.decode(stored) if stored is not None else {}
                if "args" not in arguments:
                    raise InvalidRequest(
                        f"job {job_id!r} cannot be retried: its arguments were not kept"
                    )
                spec = ChildSpec(old.function, arguments["args"], arguments["kwargs"],
                                 retry_id(job_id), old.weight, old.tags)  # fmt: skip
                [child] = self._children(batch_id, [spec], retry_of=job_id)
                new.append(child)
        return new

    async def delete(self, batch_id: str) -> None:
        """Delete an ended batch and its children; ``BatchConflict`` while it is active."""
        for _ in range(3):
            outcome = await self.store.delete(batch_id, self.lifecycle.arq.result_key)
            if outcome is None:
                raise BatchNotFound(batch_id)
            if outcome == "ok":
                return
            if outcome != "changed":
                raise BatchConflict(f"batch {batch_id!r} is {outcome}: cancel it first")
        raise BatchConflict(f"batch {batch_id!r} keeps changing; try again")

    def _children(
        self, batch_id: str, children: Sequence[ChildSpec], *, retry_of: str | None = None
    ) -> list[NewChild]:
        move("create", Party.CLIENT)  # the script applies it: only where no job is
        arq = self.lifecycle.arq
        now_ms = int(time.time() * 1000)
        new = []
        for spec in children:
            job_id = spec.job_id or secrets.token_urlsafe(16)
            snapshot = Snapshot.queued(
                job_id, spec.function, retry_of=retry_of, tags=list(spec.tags),
                batch_id=batch_id, weight=spec.weight,
            )  # fmt: skip
            enqueue = arq.enqueue(
                job_id, spec.function, spec.args, spec.kwargs, now_ms=now_ms, defer_ms=0
            )
            hidden = {"arguments": _arguments(spec.args, spec.kwargs)}
            new.append(NewChild(snapshot, hidden, enqueue, retry_of))
        return new


def _status_of(data: bytes) -> str:
    """A batch snapshot's status, read without decoding the rest."""
    return str(msgspec.json.decode(data, type=_BatchStatus).status)


class _BatchStatus(msgspec.Struct):
    status: str
