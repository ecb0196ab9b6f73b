"""Worker side: snapshot writes made while a round trip is under way go out together.

A worker runs many jobs at once, and each writes ``started``, its reports and its end. Sent
one by one, the round trips of those writes cost a worker more CPU than ARQ's own
bookkeeping. ``WriteBatch`` sends what was written during one event-loop tick as one
pipeline, and what comes in while that is in flight as the next; each write is still its own
atomic script and snapshot. Writes of one job keep their order: batches go out one at a
time, in the order the writes were made.

    batch = WriteBatch(store)
    pending = batch.submit(job_id, {"status": Status.STARTED})   # no wait for the reply
    data = await batch.write(job_id, {"status": Status.RUNNING, "percent": 40.0})
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from typing import Any

from jobhub.core.metrics import WorkerMetrics
from jobhub.core.snapshot import Status
from jobhub.store.patches import PreparedWrite
from jobhub.store.store import Store

__all__ = ["WriteBatch"]


class WriteBatch:
    def __init__(
        self, store: Store, owner: str | None = None, metrics: WorkerMetrics | None = None
    ) -> None:
        self.store = store
        self.owner = owner
        self.metrics = metrics
        self._pending: list[tuple[PreparedWrite, asyncio.Future[bytes]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    def submit(
        self,
        job_id: str,
        patch: Mapping[str, Any],
        *,
        function: str | None = None,
        only_from: Collection[Status] = (),
        run: str | None = None,
        hidden: Mapping[str, str] | None = None,
        once: tuple[str, int] | None = None,
    ) -> asyncio.Future[bytes]:
        """Queue a write and return at once; the future holds its snapshot JSON or error.

        Encoding happens here, so a value JSON cannot carry raises ``TypeError`` (or
        ``ValueError``) to the caller. The options are as for ``Store.prepare``.
        """
        prepared = self.store.prepare(
            job_id,
            patch,
            function=function,
            only_from=only_from,
            owner=self.owner,
            run=run,
            hidden=hidden,
            once=once,
        )
        return self._queue(prepared)

    def append(
        self,
        job_id: str,
        entry: Mapping[str, Any],
        *,
        run: str | None = None,
        once: tuple[str, int] | None = None,
    ) -> asyncio.Future[bytes]:
        """Queue an output entry (see ``Store.prepare_entry``); the future holds its stream
        id. It is ordered with the snapshot writes around it."""
        prepared = self.store.prepare_entry(job_id, entry, run=run, owner=self.owner, once=once)
        return self._queue(prepared)

    @property
    def backlog(self) -> int:
        """Writes queued and not yet sent."""
        return len(self._pending)

    async def aclose(self) -> None:
        """Send what is queued, then refuse every later write (``RuntimeError``). A job's
        context kept past its worker's end would otherwise open a connection again, on a
        client already closed, that nobody closes."""
        self._closed = True
        if self._flusher is not None:
            await asyncio.wait([self._flusher])

    def _queue(self, prepared: PreparedWrite) -> asyncio.Future[bytes]:
        if self._closed:
            raise RuntimeError(f"job {prepared.job_id}: its worker has stopped; write not sent")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append((prepared, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        batch: list[tuple[PreparedWrite, asyncio.Future[bytes]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    began = time.perf_counter()
                    results = await self.store.write_many([w for w, _ in batch])
                    if self.metrics is not None:
                        self.metrics.write_seconds.observe(time.perf_counter() - began)
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue  # its writer was cancelled; the write happened all the same
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flusher = None
            for _, future in batch + self._pending:
                future.cancel()  # only if the flush itself was cancelled: nobody waits forever
            self._pending = []
