"""Python clients for the jobhub HTTP API: ``AsyncClient``, and ``Client`` for plain code.

    async with AsyncClient("http://localhost:8000") as hub:
        job = await hub.submit("demo.count", steps=5)
        async for snapshot in hub.events(job.job_id):
            print(snapshot.status, snapshot.percent, snapshot.message)
        final = await hub.wait(job.job_id)          # raises JobFailed / JobCanceled / WaitTimeout

    with Client("http://localhost:8000") as hub:
        print(hub.wait(hub.submit("demo.count", steps=5).job_id).result)

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
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Literal, NoReturn, Self, TypeAlias, TypeVar, overload

import httpx
import msgspec
from httpx_sse import ServerSentEvent, aconnect_sse

from jobhub.core.exceptions import ApiError, JobCanceled, JobFailed, WaitTimeout
from jobhub.core.logs import job as log_job
from jobhub.core.positions import Gap, entry_key, is_entry_id
from jobhub.core.snapshot import JOB_ID, Snapshot, Status, decode

__all__ = ["AsyncClient", "Client", "Gap", "JobEvent", "LogEntry", "OutputChunk"]

T = TypeVar("T")

STREAM_FAILURES = 3
"""Stream failures in a row before ``events()`` polls instead."""

STREAM_IDLE_TIMEOUT = 60.0
"""Longest silence on an event stream before it counts as dropped. A quiet job's stream
carries only heartbeats (every 15 s by default), so the client's per-request ``timeout``
would cut it and reconnect over and over; four heartbeats missed means the link is gone."""

OUTPUT_PAGE = 1000
"""Entries asked for per ``GET /jobs/{id}/output`` while polling: the most the API gives."""


class LogEntry(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="log"):
    """A line the job logged (``await job.log(message, level)``). A failed job's traceback
    arrives as one, with level ``error``."""

    id: str
    """Its place in the job's output, a Redis stream id (``1700000000000-3``)."""
    level: str
    """``debug``, ``info``, ``warning`` or ``error``."""
    message: str
    at: str
    """When the job wrote it (ISO 8601, UTC)."""


class OutputChunk(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="output"):
    """A chunk of the job's partial result (``await job.output(data)``), as the job gave it."""

    id: str
    """Its place in the job's output, a Redis stream id (``1700000000000-3``)."""
    data: Any = None
    """Any JSON value: a token of text, a row, an object."""
    at: str
    """When the job wrote it (ISO 8601, UTC)."""


JobEvent: TypeAlias = Snapshot | LogEntry | OutputChunk | Gap
"""What ``events(job_id, output=True)`` yields."""

_ENTRY: msgspec.json.Decoder[LogEntry | OutputChunk] = msgspec.json.Decoder(LogEntry | OutputChunk)
_GAP = msgspec.json.Decoder(Gap)

logger = logging.getLogger("jobhub.client")


class _Page(msgspec.Struct):
    entries: list[LogEntry | OutputChunk]
    next: str
    gap: Gap | None = None


_PAGE = msgspec.json.Decoder(_Page)


class _Place:
    """What ``events()`` has yielded of a job: the newest snapshot and the last entry of the
    job's output. It is the stream's position (``<seq>:<entry id>``, sent back as
    ``Last-Event-ID``) and the polls' cursor, so no switch between them repeats or loses
    anything."""

    __slots__ = ("done", "entry", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.entry: str | None = None
        self.done = False

    def event_id(self) -> str:
        return f"{self.seq}:{self.entry}" if self.entry else str(self.seq)

    def take(self, event: JobEvent) -> bool:
        """Whether ``event`` is new here; if so, the place moves past it."""
        if isinstance(event, Snapshot):
            if event.seq <= self.seq:
                return False
            self.seq = event.seq
            self.done = event.is_terminal
            return True
        entry_id = event.last if isinstance(event, Gap) else event.id
        if self.entry is not None and entry_key(entry_id) <= entry_key(self.entry):
            return False
        self.entry = entry_id
        return True


def _event(sse: ServerSentEvent) -> JobEvent | None:
    """A snapshot, a log line or a chunk from the stream; None for anything else."""
    if sse.event == "message" and sse.data:
        return decode(sse.data)
    if sse.event in ("log", "output"):
        # The event's id is the position after it, <seq>:<entry id>; the data leaves the
        # entry's id out, so it goes in front, as GET /jobs/{id}/output has it.
        entry_id = sse.id.partition(":")[2]
        if is_entry_id(entry_id) and sse.data.startswith("{"):
            return _ENTRY.decode(f'{{"id":"{entry_id}",{sse.data[1:]}')
    if sse.event == "gap":
        return _GAP.decode(sse.data)
    return None


class AsyncClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        poll_interval: float = 1.0,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=_checked_url(base_url), timeout=timeout)
        self._stream_timeout = httpx.Timeout(timeout, read=max(timeout, STREAM_IDLE_TIMEOUT))
        self._api_key = api_key
        self._tokens: dict[str, str] = {}
        self._poll_interval = poll_interval

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
        snapshot = _snapshot(response)
        token = response.headers.get("jobhub-token")
        if token:
            self._tokens[snapshot.job_id] = token
        return snapshot

    async def get(self, job_id: str) -> Snapshot:
        return _snapshot(await self._http.get(_job(job_id), headers=self._auth(job_id)))

    async def cancel(self, job_id: str) -> Snapshot:
        path = _job(job_id, "/cancel")
        return _snapshot(await self._http.post(path, headers=self._auth(job_id)))

    @overload
    def events(self, job_id: str, *, output: Literal[False] = ...) -> AsyncIterator[Snapshot]: ...
    @overload
    def events(self, job_id: str, *, output: bool) -> AsyncIterator[JobEvent]: ...

    async def events(self, job_id: str, *, output: bool = False) -> AsyncIterator[JobEvent]:
        """Every new snapshot of the job, in seq order, until it ends. With ``output=True``,
        also every entry of the job's output (``LogEntry``, ``OutputChunk``), once each and
        in the order the job wrote them; a new call starts from the job's first entry. Where
        the job's capped output dropped entries before they were read, a ``Gap`` says how
        many, in their place.

            async for event in hub.events(job_id, output=True):
                if isinstance(event, OutputChunk):
                    print(event.data, end="", flush=True)
        """
        place = _Place()
        failures = 0
        while failures < STREAM_FAILURES:
            try:
                # aclosing: a consumer that stops early closes the connection now, not
                # whenever the garbage collector finalizes the inner generator.
                async with contextlib.aclosing(self._stream(job_id, place)) as stream:
                    async for event in stream:
                        failures = 0
                        if output or isinstance(event, Snapshot):
                            yield event
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass  # a dropped connection: resume from the place held
            if place.done:
                return
            failures += 1
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))
        async with contextlib.aclosing(self._poll(job_id, place, output)) as polls:
            async for event in polls:
                yield event

    async def _stream(self, job_id: str, place: _Place) -> AsyncGenerator[JobEvent]:
        """The new events of one connection to the job's stream, from ``place`` on."""
        headers = self._auth(job_id)
        if place.seq or place.entry:
            headers["Last-Event-ID"] = place.event_id()
        async with aconnect_sse(
            self._http,
            "GET",
            _job(job_id, "/events"),
            headers=headers,
            timeout=self._stream_timeout,
        ) as source:
            status = source.response.status_code
            if status == 204:
                place.done = True  # we hold the final snapshot (and all output before it)
                return
            if 400 <= status < 500:
                await source.response.aread()
                _raise(source.response)  # not found, not allowed: no use retrying
            if status != 200:
                raise httpx.RemoteProtocolError(f"the stream answered {status}")
            async for sse in source.aiter_sse():
                if sse.event == "error":  # the job is gone: the API's error body
                    _raise(httpx.Response(404, content=sse.data.encode()))
                event = _event(sse)
                if event is not None and place.take(event):
                    yield event
                if place.done:
                    return

    async def _poll(self, job_id: str, place: _Place, output: bool) -> AsyncGenerator[JobEvent]:
        while True:
            # The snapshot first, then the output: everything written before that snapshot
            # (all of it, for a final one) is then yielded before it.
            snapshot = await self.get(job_id)
            if output:
                async with contextlib.aclosing(self._output(job_id, place.entry)) as entries:
                    async for entry in entries:
                        if place.take(entry):
                            yield entry
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
                _job(job_id, "/output"),
                params={"after": cursor, "limit": OUTPUT_PAGE},
                headers=self._auth(job_id),
            )
            if response.is_error:
                _raise(response)
            page = _PAGE.decode(response.content)
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
            async with asyncio.timeout(timeout):
                async for event in self.events(job_id, output=output):
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


class Client:
    """The same API for code without an event loop: each call runs on a private loop thread
    (where ``wait``'s ``on_log`` and ``on_output`` are called too).

    The thread is a daemon, and stops when the client is closed or garbage-collected: a
    client nobody closes must not keep the interpreter from exiting (a non-daemon thread
    is joined at exit, and its loop never ends on its own)."""

    def __init__(self, base_url: str, **options: Any) -> None:
        _checked_url(base_url)  # before the loop thread starts: nothing to stop if it fails
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jobhub-client", daemon=True
        )
        self._thread.start()
        # Not a method of self: the finalizer must not keep the client alive.
        self._stop_loop = weakref.finalize(self, _stop_loop, self._loop, self._thread)
        try:
            self._client = self._call(_make_client(base_url, options))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs ``coroutine`` on the loop thread and returns its result here. Interrupted
        (Ctrl-C), it cancels the coroutine rather than leave it running behind the caller."""
        if threading.current_thread() is self._thread:
            # From ``on_log``/``on_output``: waiting here would stop the loop it waits on.
            coroutine.close()
            raise RuntimeError("a Client cannot be called from its own callbacks")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections and stops the loop thread; a second call does nothing."""
        if self._stop_loop.alive:
            try:
                self._call(self._client.aclose())
            finally:
                self._stop_loop()

    def submit(self, function: str, *args: Any, **kwargs: Any) -> Snapshot:
        return self._call(self._client.submit(function, *args, **kwargs))

    def get(self, job_id: str) -> Snapshot:
        return self._call(self._client.get(job_id))

    def cancel(self, job_id: str) -> Snapshot:
        return self._call(self._client.cancel(job_id))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_log: Callable[[LogEntry], object] | None = None,
        on_output: Callable[[Any], object] | None = None,
        on_gap: Callable[[Gap], object] | None = None,
    ) -> Snapshot:
        return self._call(
            self._client.wait(
                job_id, timeout=timeout, on_log=on_log, on_output=on_output, on_gap=on_gap
            )
        )

    @overload
    def events(
        self, job_id: str, *, timeout: float | None = ..., output: Literal[False] = ...
    ) -> Iterator[Snapshot]: ...
    @overload
    def events(
        self, job_id: str, *, timeout: float | None = ..., output: bool
    ) -> Iterator[JobEvent]: ...

    def events(
        self, job_id: str, *, timeout: float | None = None, output: bool = False
    ) -> Iterator[JobEvent]:
        """Like ``AsyncClient.events``; stops (without error) when ``timeout`` passes."""
        iterator = self._client.events(job_id, output=output).__aiter__()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                event: JobEvent = self._call(asyncio.wait_for(iterator.__anext__(), left))
            except (StopAsyncIteration, TimeoutError):
                return
            yield event


def _job(job_id: str, rest: str = "") -> str:
    """The path of a job's resource; an id that is no job id (``..``, ``a/b``) would name
    another resource, so it is refused here as the API refuses it."""
    if re.fullmatch(JOB_ID, job_id) is None:
        raise ApiError(400, "InvalidRequest", f"invalid job id {job_id!r}: expected {JOB_ID}")
    return f"/jobs/{job_id}{rest}"


def _checked_url(base_url: str) -> httpx.URL:
    """``base_url`` parsed, or ``httpx.InvalidURL`` now rather than at the first request."""
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise httpx.InvalidURL(f"expected http://host[:port] or https://..., got {base_url!r}")
    if url.port is not None and not 0 < url.port < 65536:
        raise httpx.InvalidURL(f"port {url.port} is not between 1 and 65535")
    return url


async def _make_client(base_url: str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(base_url, **options)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Ends a ``Client``'s loop thread, then the loop. A finalizer runs wherever the garbage
    collector does, the loop's own thread too, which cannot wait for itself."""
    if thread is threading.current_thread():
        loop.call_soon(loop.stop)  # the thread ends after the callback now running
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def _snapshot(response: httpx.Response) -> Snapshot:
    if response.is_error:
        _raise(response)
    return decode(response.content)


def _raise(response: httpx.Response) -> NoReturn:
    try:
        error = response.json()["error"]
        error_type, detail = str(error["type"]), str(error["detail"])
    except (ValueError, KeyError, TypeError):
        error_type, detail = "HTTPError", f"HTTP {response.status_code}"
    raise ApiError(response.status_code, error_type, detail)
