"""The Starlette application: ``uvicorn --factory jobhub.server.app:create_app``.

app = create_app(Settings(redis_url="redis://localhost:6379/0"))
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobhub.archive.database import ArchiveNotMigrated, check_schema, open_engine
from jobhub.archive.reads import ArchiveReads
from jobhub.core.exceptions import JobhubError
from jobhub.core.logs import configure as configure_logs
from jobhub.core.metrics import WebMetrics
from jobhub.core.settings import Settings
from jobhub.lifecycle.batches import BatchLifecycle
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.server import openapi
from jobhub.server.archive import routes as archive_routes
from jobhub.server.archived import reading_archive
from jobhub.server.auth import CSRF_HEADER, Gate, RedactTokens, Tokens
from jobhub.server.batches import routes as batch_routes
from jobhub.server.console import routes as operator_routes
from jobhub.server.cors import CORS
from jobhub.server.guard import RequireUtf8
from jobhub.server.health import healthz
from jobhub.server.routes import STATIC, TOKEN_HEADER, Error, ErrorDetail, error_of, routes
from jobhub.server.scopes import Scopes
from jobhub.server.services import Services, json_response
from jobhub.server.session import routes as session_routes
from jobhub.server.streaming.hub import Hub
from jobhub.server.streaming.sse import Streams
from jobhub.server.tagged import routes as tagged_routes
from jobhub.store.batches import BatchStore
from jobhub.store.connections import pubsub_connection, web_client, web_pool
from jobhub.store.registry import Registry
from jobhub.store.store import Store
from jobhub.webhooks.deliveries import DeliveryLog

__all__ = ["create_app"]

logger = logging.getLogger("jobhub.web")


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the web app; settings come from the environment unless given."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = web_pool(settings)
        redis = web_client(pool)
        store = Store.from_settings(redis, settings)
        hub = Hub(
            functools.partial(pubsub_connection, pool),
            store.get_many,
            read_outputs=store.output_many,
            read_recent=store.newest,
            subscribe_timeout=settings.redis_timeout_seconds,
        )
        streams = Streams(
            send_timeout=settings.send_timeout_seconds, heartbeat=settings.heartbeat_seconds
        )
        undo_logs = configure_logs(settings.log_format)
        tokens = None
        if settings.token_secret:
            tokens = Tokens(settings.token_secret, ttl_seconds=settings.token_ttl_seconds)
        scopes = None if tokens is None else Scopes(tokens, redis)
        archive = None
        if settings.archive_url is not None:
            archive = ArchiveReads(open_engine(settings.archive_url))
            try:
                await check_schema(archive.engine)
            except (ArchiveNotMigrated, SQLAlchemyError, OSError) as exc:
                # The web app may start before `jobhub archive migrate` ran (`jobhub dev`
                # starts both at once): it serves, and the archive's reads answer 503 until
                # the database is there.
                logger.warning("the archive is not ready yet: %s", exc)
        # Past Redis's TTL a job's token still opens it: the gate reads the archive too.
        gate = Gate(settings.api_keys, tokens, reading_archive(store.get_many, archive), scopes)
        if gate.open:
            logger.warning("no JOBHUB_API_KEYS set: anyone who can reach this app can use it")
        redact = RedactTokens()
        access_log = logging.getLogger("uvicorn.access")
        access_log.addFilter(redact)
        metrics = WebMetrics(lambda: len(streams), lambda: hub.subscribed_jobs)
        streams.delivered = metrics.delivered.inc
        await hub.start()
        await streams.start()
        lifecycle = Lifecycle(redis, store, queue_name=settings.queue_name)
        registry = Registry(
            redis, lost_after=settings.worker_lost_after_seconds, queue_name=settings.queue_name
        )
        app.state.services = Services(
            settings,
            metrics,
            gate,
            store,
            hub,
            streams,
            lifecycle,
            registry,
            deliveries=DeliveryLog(redis),
            batches=BatchLifecycle(
                lifecycle,
                BatchStore(
                    redis,
                    result_ttl_seconds=settings.result_ttl_seconds,
                    history_limit=settings.history_limit,
                ),
            ),
            archive=archive,
        )
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
            if archive is not None:
                await archive.engine.dispose()

    spec = msgspec.json.encode(openapi.document())  # built once: it depends on no request

    async def openapi_json(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    async def metrics(request: Request) -> Response:
        # Function names and their counts are the business of whoever runs jobhub.
        request.app.state.services.gate.key(request)
        registry = request.app.state.services.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        middleware=[
            Middleware(
                CORS,
                allow_origins=list(settings.cors_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Last-Event-ID",
                    "If-None-Match",
                    CSRF_HEADER,
                ],
                expose_headers=["ETag", "Location", TOKEN_HEADER],
            ),
            # Inside CORS, so that a browser's page can read the 400 it answers.
            Middleware(RequireUtf8),
        ],
        routes=[
            *routes,
            *operator_routes,
            *session_routes,
            *tagged_routes,
            *batch_routes,
            *archive_routes,
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
        exception_handlers={
            JobhubError: _jobhub_error,
            HTTPException: _http_error,
            RedisError: _redis_error,
            SQLAlchemyError: _archive_error,
            Exception: _internal_error,
        },
    )


# A 503 means Redis stayed out of reach for JOBHUB_REDIS_TIMEOUT (or the process is stopping).
# The hub tries Redis again at least every 2 s, so a client back after that finds a Redis
# that has returned already in use.
_RETRY_AFTER = {"Retry-After": "2"}


def _error(
    status_code: int, type_: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    body = Error(ErrorDetail(type_, detail))
    return json_response(msgspec.json.encode(body), status_code, headers)


async def _jobhub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobhubError)
    headers = _RETRY_AFTER if exc.status_code == 503 else None
    return json_response(msgspec.json.encode(error_of(exc)), exc.status_code, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed"}
    return _error(exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail))


async def _archive_error(request: Request, exc: Exception) -> Response:
    # The archive's database is down, restarting or not migrated: the live API is not.
    logger.warning("archive error on %s %s: %s", request.method, request.url.path, exc)
    detail = "the archive's database is unavailable (or not migrated: jobhub archive migrate)"
    return _error(503, "ServiceUnavailable", detail, _RETRY_AFTER)


async def _redis_error(request: Request, exc: Exception) -> Response:
    logger.warning("Redis error on %s %s: %s", request.method, request.url.path, exc)
    return _error(503, "ServiceUnavailable", f"Redis is unavailable: {exc}", _RETRY_AFTER)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _error(500, "InternalError", "an unexpected error occurred; it has been logged")
