"""The Starlette application: ``uvicorn --factory jobhub.app:create_app``.

app = create_app(Settings(redis_url="redis://localhost:6379/0"))
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from arq.connections import ArqRedis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import openapi
from .auth import Gate, RedactTokens, Tokens
from .exceptions import JobhubError
from .hub import Hub
from .logs import configure as configure_logs
from .metrics import WebMetrics
from .routes import STATIC, TOKEN_HEADER, routes
from .services import Services
from .settings import Settings
from .sse import Streams
from .store import Store

__all__ = ["create_app"]

logger = logging.getLogger("jobhub.web")


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the web app; settings come from the environment unless given."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A bounded pool that waits rather than grows: a burst of requests queues for a
        # connection instead of opening hundreds of them to Redis.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_timeout_seconds,
        )
        redis = ArqRedis(pool, default_queue_name=settings.queue_name)
        store = Store(
            redis,
            result_ttl_seconds=settings.result_ttl_seconds,
            history_limit=settings.history_limit,
        )
        hub = Hub(pool.make_connection, store.get, subscribe_timeout=settings.redis_timeout_seconds)
        streams = Streams(
            send_timeout=settings.send_timeout_seconds, heartbeat=settings.heartbeat_seconds
        )
        undo_logs = configure_logs(settings.log_format)
        tokens = None
        if settings.token_secret:
            tokens = Tokens(settings.token_secret, ttl_seconds=settings.token_ttl_seconds)
        gate = Gate(settings.api_keys, tokens)
        if gate.open:
            logger.warning("no JOBHUB_API_KEYS set: anyone who can reach this app can use it")
        redact = RedactTokens()
        access_log = logging.getLogger("uvicorn.access")
        access_log.addFilter(redact)
        metrics = WebMetrics(lambda: len(streams), lambda: hub.subscribed_jobs)
        streams.delivered = metrics.delivered.inc
        await hub.start()
        await streams.start()
        app.state.services = Services(settings, metrics, gate, store, hub, streams, redis)
        previous_gc = gc.get_threshold()
        if settings.gc_threshold is not None:
            gc.set_threshold(*settings.gc_threshold)
        try:
            yield
        finally:
            gc.set_threshold(*previous_gc)
            access_log.removeFilter(redact)
            undo_logs()
            await streams.aclose()
            await hub.aclose()
            await redis.aclose()
            await pool.disconnect()

    spec = msgspec.json.encode(openapi.document())  # built once: it depends on no request

    async def openapi_json(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    async def metrics(request: Request) -> Response:
        registry = request.app.state.services.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "If-None-Match"],
                expose_headers=["ETag", "Location", TOKEN_HEADER],
            )
        ],
        routes=[
            *routes,
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
        exception_handlers={
            JobhubError: _jobhub_error,
            HTTPException: _http_error,
            RedisError: _redis_error,
            Exception: _internal_error,
        },
    )


def _error(status_code: int, type_: str, detail: str) -> Response:
    return JSONResponse({"error": {"type": type_, "detail": detail}}, status_code)


async def _jobhub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobhubError)
    return JSONResponse(exc.to_body(), exc.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed"}
    return _error(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))


async def _redis_error(request: Request, exc: Exception) -> Response:
    logger.warning("Redis error on %s %s: %s", request.method, request.url.path, exc)
    return _error(503, "ServiceUnavailable", f"Redis is unavailable: {exc}")


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _error(500, "InternalError", "an unexpected error occurred; it has been logged")
