"""The floor for bench/fanout.py: the least an SSE endpoint on jobhub's stack can do per event.

The same stack as jobhub's web app (uvicorn, Starlette, sse-starlette's response with the
send step jobhub replaces replaced the same way), the same wire format, one pub/sub
connection for all streams, and nothing else: each message is framed once and handed to
every stream of its job, which writes what it was handed. No ordering by ``seq``, no
resume, no output, no access checks, no metrics, no send timeout, no reconnect: none of
what jobhub promises. What it costs per delivered event is what this stack costs before
jobhub does anything (``--kinds floor,jobhub``); ``create_bare_app``, the same without
Starlette and sse-starlette (``--kinds bare``).

    uvicorn --factory floor_app:create_app --app-dir bench
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobhub.core import keys
from jobhub.core.snapshot import decode_head
from jobhub.store.store import Store

CHANNEL = keys.job_channel("*")
PREFIX, _, SUFFIX = CHANNEL.encode().partition(b"*")


class PlainSend(EventSourceResponse):
    """sse-starlette's response with the one change jobhub makes to it (its send step, see
    jobhub/server/streaming/sse.py): without it the floor would carry a cost jobhub does
    not."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        await send(message)


class Stream:
    """One stream's pending frames and the future its task waits on."""

    __slots__ = ("ended", "pending", "waiter")

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.ended = False

    def push(self, frame: bytes, last: bool) -> None:
        self.pending.append(frame)
        self.ended = self.ended or last
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def frame_of(data: bytes) -> tuple[bytes, bool]:
    """The SSE frame of a snapshot, and whether it is the job's last."""
    return b"data: " + data + b"\n\n", decode_head(data).is_terminal


class Fanout:
    """One pub/sub connection for every job's channel; each message is framed once and
    handed to every stream of its job."""

    def __init__(self) -> None:
        self.redis = Redis.from_url(os.environ["REDIS_URL"])
        self.store = Store(self.redis, result_ttl_seconds=3600)
        self.streams: dict[bytes, set[Stream]] = {}
        self.listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.listener = asyncio.create_task(self.listen())

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.listener
        await self.redis.aclose()

    async def listen(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.psubscribe(CHANNEL)
        async for message in pubsub.listen():
            if message["type"] != "pmessage":
                continue
            watching = self.streams.get(message["channel"][len(PREFIX) : -len(SUFFIX)])
            if watching:
                frame, last = frame_of(message["data"])
                for stream in watching:
                    stream.push(frame, last)

    async def open(self, job_id: str) -> AsyncIterator[bytes] | None:
        """The job's frames from its stored snapshot on, or None if there is no job."""
        stream = Stream()
        watching = self.streams.setdefault(job_id.encode(), set())
        watching.add(stream)
        data = await self.store.get(job_id)
        if data is None:
            watching.discard(stream)
            return None
        frame, last = frame_of(data)
        stream.pending.insert(0, frame)
        stream.ended = stream.ended or last
        return self._frames(stream, watching)

    async def _frames(self, stream: Stream, watching: set[Stream]) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not stream.pending:
                    stream.waiter = loop.create_future()
                    await stream.waiter
                frames, stream.pending = stream.pending, []
                yield b"".join(frames)
                if stream.ended and not stream.pending:
                    return
        finally:
            watching.discard(stream)


def create_app() -> Starlette:
    fanout = Fanout()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await fanout.start()
        yield
        await fanout.stop()

    async def events(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        frames = await fanout.open(job_id)
        if frames is None:
            return JSONResponse({"error": {"type": "JobNotFound", "detail": job_id}}, 404)
        return PlainSend(frames, ping=0)

    async def index(request: Request) -> Response:
        return Response("floor")

    return Starlette(
        routes=[Route("/", index), Route("/jobs/{job_id}/events", events)], lifespan=lifespan
    )


def create_bare_app() -> ASGIApp:
    """The same fan-out as a plain ASGI app on uvicorn: no Starlette, no sse-starlette (its
    tasks per response, its stream loop), one send per chunk; it does not even watch for
    the client leaving. What a response of jobhub's own, in place of sse-starlette's, would
    start from (``--kinds bare``)."""
    fanout = Fanout()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await fanout.start()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await fanout.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
        parts = scope["path"].split("/")
        frames = await fanout.open(parts[2]) if len(parts) == 4 and parts[3] == "events" else None
        if frames is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in frames:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app
