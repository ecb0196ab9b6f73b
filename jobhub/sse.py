"""The SSE response: sse-starlette's ``EventSourceResponse``, with one timer per process.

sse-starlette times every send with its own anyio cancel scope (even with no timeout set)
and runs a ping task per stream. At thousands of streams both add up: measured with
bench/fanout.py at 3,000 streams, the per-send scope took a third of the web process's
CPU (p99 staleness 296 ms with it, 180 ms without; updates delivered 51 % -> 78 %), and the
ping task was ~5 KiB of each idle stream. So ``EventStream`` sends without a scope, and
one ``Streams`` watchdog per app looks at every open stream once a second:

- a send under way for longer than ``send_timeout`` is a client that stopped reading: the
  stream's task is cancelled and the response ends with sse-starlette's own
  ``SendTimeoutError``, exactly as its per-send timeout would have;
- a stream that has sent nothing for ``heartbeat`` seconds is told to send a comment.

    streams = Streams(send_timeout=30, heartbeat=15)
    await streams.start()
    return EventStream(frames(watch), watch, streams)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Scope, Send

from .hub import Watch

__all__ = ["HEARTBEAT", "EventStream", "Streams"]

HEARTBEAT = ServerSentEvent(comment="heartbeat").encode()
"""An SSE comment: ignored by EventSource, but keeps proxies from closing an idle stream."""


class EventStream(EventSourceResponse):
    """One open stream of snapshots, watched over by ``Streams``."""

    def __init__(self, content: AsyncIterator[bytes], watch: Watch, streams: Streams) -> None:
        super().__init__(content, ping=0, background=BackgroundTask(watch.close))
        self.watch = watch
        self._streams = streams
        self.sending_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stalled = False

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # Overrides sse-starlette's per-send cancel scope; ``Streams`` enforces the timeout.
        self.sending_since = time.monotonic()
        await send(message)
        self.sending_since = None
        self._streams.delivered()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._task = asyncio.current_task()
        self._streams.add(self)
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            if not self._stalled or self._task is None:
                raise
            self._task.uncancel()
            raise SendTimeoutError() from None
        finally:
            self._streams.discard(self)
            self.watch.close()

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
        self.delivered: Callable[[], None] = lambda: None
        """Called for every event sent (the app counts them in its metrics)."""

    def __len__(self) -> int:
        return len(self._open)

    def add(self, stream: EventStream) -> None:
        self._open.add(stream)

    def discard(self, stream: EventStream) -> None:
        self._open.discard(stream)

    async def start(self) -> None:
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
            for stream in list(self._open):
                if stream.sending_since is not None:
                    if now - stream.sending_since > self.send_timeout:
                        stream.cut()
                elif now - stream.watch.last_sent >= self.heartbeat:
                    stream.watch.beat()
