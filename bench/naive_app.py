"""The baseline for bench/fanout.py: the same endpoint, built the naive way.

Every stream opens its own Redis pub/sub connection, subscribes, reads the snapshot and
forwards each message (the pattern of most tutorials). Same Store, same sse-starlette, same
wire format as jobhub; only the fan-out differs.

    uvicorn --factory naive_app:create_app --app-dir bench
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobhub.core import keys
from jobhub.core.snapshot import decode_head
from jobhub.store.store import Store


def create_app() -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = Redis.from_url(os.environ["REDIS_URL"])
        app.state.store = Store(app.state.redis, result_ttl_seconds=3600)
        yield
        await app.state.redis.aclose()

    async def events(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        pubsub = request.app.state.redis.pubsub()  # one connection per stream
        await pubsub.subscribe(keys.job_channel(job_id))
        data = await request.app.state.store.get(job_id)
        if data is None:
            await pubsub.aclose()
            return JSONResponse({"error": {"type": "JobNotFound", "detail": job_id}}, 404)

        async def stream() -> AsyncIterator[bytes]:
            try:
                seq = 0
                message = {"data": data}
                while True:
                    if message is not None and isinstance(message["data"], bytes):
                        head = decode_head(message["data"])
                        if head.seq > seq:
                            seq = head.seq
                            yield ServerSentEvent(
                                data=message["data"].decode(), id=str(seq)
                            ).encode()
                            if head.is_terminal:
                                return
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            finally:
                await pubsub.aclose()

        return EventSourceResponse(stream())

    async def index(request: Request) -> Response:
        return Response("naive")

    return Starlette(
        routes=[Route("/", index), Route("/jobs/{job_id}/events", events)], lifespan=lifespan
    )
