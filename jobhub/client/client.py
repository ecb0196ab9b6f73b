"""The Python client of the jobhub HTTP API, ``AsyncClient`` (``Client``, in ``sync.py``
beside it, is the same for code without an event loop).

    async with AsyncClient("http://localhost:8000") as hub:
        job = await hub.submit("demo.count", steps=5)
        async for snapshot in hub.events(job.job_id):
            print(snapshot.status, snapshot.percent, snapshot.message)
        final = await hub.wait(job.job_id)          # raises JobFailed / JobCanceled / WaitTimeout

``events()`` follows the job's SSE stream; when the connection drops it reconnects with
``Last-Event-ID`` (so it never repeats a snapshot or an entry), and if the stream keeps
failing it falls back to polling ``GET /jobs/{id}`` (and ``GET /jobs/{id}/output``).
``events(job_id, output=True)`` yields the job's log lines (``LogEntry``) and chunks of
output (``OutputChunk``) too, each once and in order, among its snapshots. Job tokens
handed out by ``submit`` are used for that job's calls; ``api_key`` for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any, Literal, Self, overload

import httpx
from httpx_sse import EventSource

from jobhub.client.api import checked_url, job_path, raise_error, snapshot_of
from jobhub.client.batches import Batching
from jobhub.client.events import (
    OUTPUT_PAGE,
    PAGE,
    JobEvent,
    LogEntry,
    OutputChunk,
    Place,
    parse_event,
)
from jobhub.client.history import History
from jobhub.client.tokens import Minting
from jobhub.core.exceptions import JobCanceled, JobFailed, WaitTimeout
from jobhub.core.logs import job as log_job
from jobhub.core.positions import Gap
from jobhub.core.snapshot import Snapshot, Status

__all__ = ["AsyncClient"]

STREAM_FAILURES = 3
"""Stream failures in a row before ``events()`` polls instead."""

POLL_FAILURES = 10
"""Failed polls in a row (about 15 s of them, backing off) before ``events()`` gives up."""

STREAM_IDLE_TIMEOUT = 60.0
"""Longest silence on an event stream before it counts as dropped. A quiet job's stream
carries only heartbeats (every 15 s by default), so the client's per-request ``timeout``
would cut it and reconnect over and over; four heartbeats missed means the link is gone."""

logger = logging.getLogger("jobhub.client")


class AsyncClient(Minting, Batching, History):
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        poll_interval: float = 1.0,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=checked_url(base_url), timeout=timeout)
        self._stream_timeout = httpx.Timeout(timeout, read=max(timeout, STREAM_IDLE_TIMEOUT))
        self._api_key = api_key
        self._tokens: dict[str, str] = {}
        self._poll_interval = poll_interval
        self._open_streams: weakref.WeakSet[AsyncGenerator[JobEvent, None]] = weakref.WeakSet()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the streams of ``events()`` left open, one after the other, then the
        connections. Left to the event loop's shutdown, they would be closed all at once."""
        for stream in list(self._open_streams):
            # One mid-step (a task being cancelled is driving it) refuses: "already running".
            # It ends, and closes its connection, as that task does.
            with contextlib.suppress(RuntimeError):
                await stream.aclose()
        await self._http.aclose()

    def _auth(self, job_id: str | None = None) -> dict[str, str]:
        credential = self._tokens.get(job_id or "") or self._api_key
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    async def submit(
        self,
        function: str,
        *args: Any,
        job_id: str | None = None,
        callback_url: str | None = None,
        **kwargs: Any,
    ) -> Snapshot:
        """Start a job (or find the one with this ``job_id``); returns its snapshot."""
        body: dict[str, Any] = {"function": function, "args": list(args), "kwargs": kwargs}
        if job_id is not None:
            body["job_id"] = job_id
        if callback_url is not None:
            body["callback_url"] = callback_url
        response = await self._http.post("/jobs", json=body, headers=self._auth())
        snapshot = snapshot_of(response)
        token = response.headers.get("jobhub-token")
        if token:
            self._tokens[snapshot.job_id] = token
        return snapshot

    async def get(self, job_id: str) -> Snapshot:
        return snapshot_of(await self._http.get(job_path(job_id), headers=self._auth(job_id)))

    async def cancel(self, job_id: str) -> Snapshot:
        path = job_path(job_id, "/cancel")
        return snapshot_of(await self._http.post(path, headers=self._auth(job_id)))

    @overload
    def events(
        self, job_id: str, *, output: Literal[False] = ...
    ) -> AsyncGenerator[Snapshot, None]: ...
    @overload
    def events(self, job_id: str, *, output: bool) -> AsyncGenerator[JobEvent, None]: ...

    def events(self, job_id: str, *, output: bool = False) -> AsyncGenerator[JobEvent, None]:
        """Every new snapshot of the job, in seq order, until it ends. With ``output=True``,
        also every entry of the job's output (``LogEntry``, ``OutputChunk``), once each and
        in the order the job wrote them; a new call starts from the job's first entry. Where
        the job's capped output dropped entries before they were read, a ``Gap`` says how
        many, in their place. A stream still open when the client closes is closed with it.

            async for event in hub.events(job_id, output=True):
                if isinstance(event, OutputChunk):
                    print(event.data, end="", flush=True)
        """
        stream = self._events(job_id, output)
        self._open_streams.add(stream)
        return stream

    async def _events(self, job_id: str, output: bool) -> AsyncGenerator[JobEvent, None]:
        place = Place()
        failures = 0
        while failures < STREAM_FAILURES:
            if self._http.is_closed:
                return  # the client closed under a step of this stream: it ends with it
            try:
                response = await self._open_stream(job_id, place)
                if response is not None:
                    # The stream is read here and not through a generator of its own: an
                    # event loop's shutdown closes every generator left open at once, and
                    # one that closes another (an ``async with`` of a generator-based
                    # context manager) then collides with it ("already running").
                    try:
                        async for sse in EventSource(response).aiter_sse():
                            if sse.event == "error":  # the job is gone: the API's error body
                                raise_error(httpx.Response(404, content=sse.data.encode()))
                            event = parse_event(sse)
                            if event is not None and place.take(event):
                                failures = 0
                                if output or isinstance(event, Snapshot):
                                    yield event
                            if place.done:
                                return
                    finally:
                        await response.aclose()
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass  # a dropped connection: resume from the place held
            if place.done:
                return
            failures += 1
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))
        async with contextlib.aclosing(self._poll(job_id, place, output)) as polls:
            async for event in polls:
                yield event

    async def _open_stream(self, job_id: str, place: Place) -> httpx.Response | None:
        """One connection to the job's stream, from ``place`` on; None when the job has
        nothing after it (204: ``place`` holds the final snapshot)."""
        headers = self._auth(job_id)
        headers.update({"Accept": "text/event-stream", "Cache-Control": "no-store"})
        if place.seq or place.entry:
            headers["Last-Event-ID"] = place.event_id()
        request = self._http.build_request(
            "GET", job_path(job_id, "/events"), headers=headers, timeout=self._stream_timeout
        )
        response = await self._http.send(request, stream=True)
        status = response.status_code
        if status == 200:
            return response
        try:
            if status == 204:
                place.done = True  # we hold the final snapshot (and all output before it)
                return None
            await response.aread()
            if 400 <= status < 500:
                raise_error(response)  # not found, not allowed: no use retrying
            raise httpx.RemoteProtocolError(f"the stream answered {status}")
        finally:
            await response.aclose()

    async def _poll(
        self, job_id: str, place: Place, output: bool
    ) -> AsyncGenerator[JobEvent, None]:
        failures = 0
        while not self._http.is_closed:
            # The snapshot first, then the output: everything written before that snapshot
            # (all of it, for a final one) is then yielded before it.
            try:
                snapshot = await self.get(job_id)
                if output:
                    async with contextlib.aclosing(self._output(job_id, place.entry)) as entries:
                        async for entry in entries:
                            if place.take(entry):
                                yield entry
            except (httpx.TransportError, httpx.RemoteProtocolError):
                # A blip while polling, as while streaming: resume from the place held.
                failures += 1
                if failures >= POLL_FAILURES:
                    raise
                await asyncio.sleep(min(0.1 * 2**failures, 2.0))
                continue
            failures = 0
            if place.take(snapshot):
                yield snapshot
            if place.done:
                return
            await asyncio.sleep(self._poll_interval)

    async def _output(
        self, job_id: str, after: str | None
    ) -> AsyncGenerator[LogEntry | OutputChunk | Gap]:
        """The job's entries after ``after`` (all, for None), a page at a time, each page's
        gap (entries trimmed before they were read) in front of it."""
        cursor = after or "0"
        while True:
            response = await self._http.get(
                job_path(job_id, "/output"),
                params={"after": cursor, "limit": OUTPUT_PAGE},
                headers=self._auth(job_id),
            )
            if response.is_error:
                raise_error(response)
            page = PAGE.decode(response.content)
            if page.gap is not None:
                yield page.gap
            for entry in page.entries:
                yield entry
            if len(page.entries) < OUTPUT_PAGE:
                return
            cursor = page.next

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the API's own deadline, as WaitTimeout
        on_log: Callable[[LogEntry], object] | None = None,
        on_output: Callable[[Any], object] | None = None,
        on_gap: Callable[[Gap], object] | None = None,
    ) -> Snapshot:
        """The final snapshot of a finished job; raises ``JobFailed``, ``JobCanceled``, or
        ``WaitTimeout`` (with the last snapshot seen) when ``timeout`` passes first.

        ``on_output`` is called with each chunk of the job's output and ``on_log`` with each
        log line, in order, from the job's first, as they come; what they were given stays
        given when the wait raises. Entries the job's capped output dropped before they were
        read go to ``on_gap`` as a ``Gap`` (with none, a warning is logged on
        ``jobhub.client``), in their place among the others:

            chunks = []
            final = await hub.wait(job_id, on_output=chunks.append)
            text = "".join(chunks)
        """
        last: Snapshot | None = None
        output = on_log is not None or on_output is not None
        try:
            async with (
                asyncio.timeout(timeout),
                contextlib.aclosing(self.events(job_id, output=output)) as events,
            ):
                async for event in events:
                    if isinstance(event, Snapshot):
                        last = event
                    elif isinstance(event, LogEntry):
                        if on_log is not None:
                            on_log(event)
                    elif isinstance(event, Gap):
                        if on_gap is not None:
                            on_gap(event)
                        else:
                            logger.warning(
                                "job %s: missed %d entries of its output (trimmed)",
                                job_id,
                                event.missed,
                                extra=log_job(job_id),
                            )
                    elif on_output is not None:
                        on_output(event.data)
        except TimeoutError:
            raise WaitTimeout(f"job {job_id!r} did not end within {timeout} s", last) from None
        if last is None:
            last = await self.get(job_id)
        if last.status is Status.FAILED:
            detail = last.error.detail if last.error else "failed"
            raise JobFailed(f"job {job_id!r} failed: {detail}", last)
        if last.status is Status.CANCELED:
            raise JobCanceled(f"job {job_id!r} was canceled", last)
        return last
