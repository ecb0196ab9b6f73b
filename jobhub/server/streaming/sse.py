"""The SSE response: sse-starlette's ``EventSourceResponse``, with one timer per process.

``EventStream`` is an ``EventSourceResponse`` used through its public API: jobhub hands it
the stream's bytes and, to ``__call__``, an ASGI ``send`` of its own that notes when each
send starts and ends. One ``Streams`` watchdog per app looks at every open stream once a
second:

- a send under way for longer than ``send_timeout`` is a client that stopped reading: the
  stream's task is cancelled and the response ends with sse-starlette's own
  ``SendTimeoutError``, as its per-send timeout would have;
- a stream that has sent nothing for ``heartbeat`` seconds is told to send a comment;
- once sse-starlette signals that the server is stopping (``shutdown_event``, one for all
  streams), every stream is ended cleanly, within its grace period: its watch is closed,
  its body ends, and the client gets the end of the response rather than a cut connection
  (and the server logs no "ASGI callable returned without completing response" per stream).

Why not sse-starlette's own ``send_timeout`` and ``ping``: a timeout arms a timer for every
send, and a ping is a task per stream (~5 KiB of each idle stream); at 3,000 streams both
add up (measured with bench/fanout.py).

The send step, ``_send_with_timeout``, is the one private name of sse-starlette that jobhub
touches (``EventStream`` replaces it; tests/unit/test_pins.py pins it against the locked
version). sse-starlette wraps every send in an anyio cancel scope, deadline or not: entering
one asks sniffio which async library runs and asks asyncio for the current task, and at
2,000 streams the scope was 14 % of the web process's CPU (py-spy); ``Streams`` keeps the
send timeout for all streams with one timer instead. The gain, in docs/performance.md.

    streams = Streams(send_timeout=30, heartbeat=15)
    await streams.start()
    return EventStream(chunks, watch, streams)

What sse-starlette 3.7 changes beyond the response, found by reading it, and where jobhub
stands:

- **At import** (``import sse_starlette``, any of it), when uvicorn is installed, it
  replaces ``uvicorn.main.Server.handle_exit`` on the class, for the whole process and for
  good, with ``AppStatus.handle_exit``: that calls uvicorn's own and sets the class flag
  ``AppStatus.should_exit``, which nothing resets. So once any uvicorn server in a process
  is told to exit by a signal, every ``EventSourceResponse`` that starts later in that
  process ends at once. jobhub cannot prevent the patch without patching back; it imports
  sse-starlette only with the server stack (not with ``jobhub.client``), and never sets,
  reads or resets ``AppStatus``.
- **At response time**, each response runs three tasks (its body, a disconnect listener,
  a shutdown listener), and the first response on a thread starts a shutdown watcher task
  for that thread's event loop (thread-local state, a poll every 0.5 s) that outlives the
  response and the app. It ends when it sees ``AppStatus.should_exit``, or a uvicorn
  server that is exiting, found through the SIGTERM handler (so only for a server in the
  main thread, where uvicorn installs signal handlers); then it signals every response on
  that loop, which is how a SIGTERMed web process closes its streams without waiting out
  ``--timeout-graceful-shutdown`` (jobhub's streams take that signal through the public
  ``shutdown_event`` and end cleanly, see ``Streams``). Elsewhere (a server in a thread,
  as in the tests) it lives until its loop is torn down, and whoever runs the loop should
  cancel what is left, as ``asyncio.run`` does: its "started" flag is per thread, not per
  loop, and is cleared only when the task ends, so a loop closed with the watcher still
  pending leaves later loops on that thread without one.
- ``create_app`` and its lifespan add nothing to this: tests/integration/test_sse.py checks that a
  served stream leaves ``Server.handle_exit``, ``AppStatus`` and the signal handlers as it
  found them, and that no task of jobhub's outlives the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Scope, Send

from jobhub.server.streaming.watch import Watch

__all__ = ["EventStream", "Streams"]

# How long sse-starlette lets a stream end on its own once the server stops, before it
# cancels it: the watchdog's tick (at most 1 s) and a margin, inside uvicorn's
# --timeout-graceful-shutdown of 3 s (jobhub/dev/serve.py).
_SHUTDOWN_GRACE = 2.0


class EventStream(EventSourceResponse):
    """One open stream of ``watch``'s updates, watched over by ``Streams``."""

    def __init__(self, content: AsyncIterator[bytes], watch: Watch, streams: Streams) -> None:
        super().__init__(
            content,
            ping=0,
            background=BackgroundTask(watch.close),
            shutdown_event=streams.stopping,
            shutdown_grace_period=_SHUTDOWN_GRACE,
        )
        self.watch = watch
        self._streams = streams
        self._send: Send | None = None
        self.sending_since: float | None = None
        self.last_sent = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stalled = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._task = asyncio.current_task()
        self._send = send
        self._streams.add(self)
        try:
            await super().__call__(scope, receive, self._timed_send)
        except asyncio.CancelledError:
            if not self._stalled or self._task is None:
                raise
            self._task.uncancel()
            raise SendTimeoutError() from None
        finally:
            self._streams.discard(self)
            self.watch.close()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # sse-starlette's send step without its per-send cancel scope: ``Streams`` times
        # every send instead (see the module docstring). ``send`` is ``_timed_send``.
        await send(message)

    async def _timed_send(self, message: Message) -> None:
        # What sse-starlette sends goes through here: ``Streams`` sees how long a send has
        # been stuck, and when the stream last sent anything.
        assert self._send is not None
        self.sending_since = time.monotonic()
        try:
            await self._send(message)
        finally:
            self.sending_since = None
        self.last_sent = time.monotonic()
        if message.get("body"):
            self._streams.delivered()

    def cut(self) -> None:
        """End a stream whose client stopped reading."""
        if self._task is not None and not self._stalled:
            self._stalled = True
            self._task.cancel()


class Streams:
    """Every open ``EventStream`` of the app, and the one timer that looks after them."""

    def __init__(self, *, send_timeout: float, heartbeat: float) -> None:
        self.send_timeout = send_timeout
        self.heartbeat = heartbeat
        self._open: set[EventStream] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping: anyio.Event | None = None
        self.delivered: Callable[[], None] = lambda: None
        """Called for every chunk sent (the app counts them in its metrics)."""

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[EventStream]:
        return iter(list(self._open))

    def add(self, stream: EventStream) -> None:
        self._open.add(stream)

    def discard(self, stream: EventStream) -> None:
        self._open.discard(stream)

    @property
    def stopping(self) -> anyio.Event:
        """Set by sse-starlette (by every stream) when the server is stopping."""
        assert self._stopping is not None, "Streams.start() first"
        return self._stopping

    async def start(self) -> None:
        self._stopping = anyio.Event()  # made here: an anyio.Event needs a running loop
        self._task = asyncio.create_task(self._watch(), name="jobhub-streams")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        tick = min(1.0, self.send_timeout / 4, self.heartbeat / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            stopping = self.stopping.is_set()
            for stream in list(self._open):
                if stopping:
                    stream.watch.close()  # its body ends after what it is sending
                elif stream.sending_since is not None:
                    if now - stream.sending_since > self.send_timeout:
                        stream.cut()
                elif now - stream.last_sent >= self.heartbeat:
                    stream.watch.wake()
