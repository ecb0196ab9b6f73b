"""Redis connections for every part of jobhub: the one place that tells a plain Redis from
one behind Redis Sentinel.

With ``JOBHUB_REDIS_SENTINELS`` set, every connection (the web app's command pool, its
pub/sub connection, the workers' ARQ pool) asks the sentinels for the current master when
it connects, so after a failover each part reconnects to the new master by itself: a
command that meets the old master gone is retried with backoff until the sentinels name the
new one. ``REDIS_URL`` then gives only the password and the database.

    pool = web_pool(settings)                       # for the web app (and its hub)
    redis = web_client(pool)
    arq = arq_pool(settings) or arq_settings(settings)      # for the workers
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from .settings import Settings

__all__ = [
    "SentinelBlockingConnectionPool",
    "arq_pool",
    "arq_settings",
    "pubsub_connection",
    "web_client",
    "web_pool",
]


class SentinelBlockingConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that, like ``BlockingConnectionPool``, makes a burst of
    requests wait for one of its few connections instead of opening more or failing.

    Composed from the two public pool classes (redis-py ships the pair for its sync client
    only): the Sentinel side resolves the master for each new connection, the blocking side
    hands connections out."""


def _auth(settings: Settings) -> dict[str, Any]:
    """Password, user and database from ``REDIS_URL`` (for Sentinel, where the host and port
    come from the sentinels)."""
    parts = urlsplit(settings.redis_url)
    db = parts.path.strip("/")
    found: dict[str, Any] = {"db": int(db) if db.isascii() and db.isdigit() else 0}
    if parts.password:
        found["password"] = unquote(parts.password)
    if parts.username:
        found["username"] = unquote(parts.username)
    return found


def _retrying(tries: int, *, sentinel: bool = False) -> dict[str, Any]:
    """Connection settings that retry a command (and a connect) whose connection failed,
    with backoff: ``tries`` times, or for ever if negative. A pool hands them to each
    connection it makes, which is where redis-py applies them.

    redis-py retries a connect in two places: the connection's own connect (to one address)
    and, for Sentinel, around it, asking the sentinels for the master each time. With
    Sentinel a refused connect (``OSError``) must not be retried in the inner place, or it
    would knock on the dead old master for ever and never ask for the new one."""
    errors: list[type[Exception]] = [ConnectionError, TimeoutError]
    if not sentinel:
        errors.append(OSError)
    return {
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=tries),
        "retry_on_error": errors,
        "retry_on_timeout": True,
    }


def _sentinel(settings: Settings) -> Sentinel:
    # (redis-py leaves its Sentinel classes unannotated.)
    return Sentinel(  # type: ignore[no-untyped-call]
        list(settings.redis_sentinels), socket_timeout=settings.redis_timeout_seconds
    )


def web_pool(settings: Settings) -> ConnectionPool:
    """The web process's command pool: bounded, and a burst waits for a connection (up to
    ``JOBHUB_REDIS_TIMEOUT``) rather than opening hundreds of them to Redis. A dropped
    connection is retried a few times before a request answers 503; with Sentinel, long
    enough for a failover to name the new master.

    A command also gives up on a Redis that does not answer (stopped, or stalled) after
    ``JOBHUB_REDIS_TIMEOUT``, each try: without a read timeout a request would hold its
    connection, and then the pool, for as long as Redis stays silent."""
    timeouts = {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    if not settings.redis_sentinels:
        return BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_timeout_seconds,
            **timeouts,
            **_retrying(3),
        )
    return SentinelBlockingConnectionPool(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master,
        _sentinel(settings),
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_seconds,
        **timeouts,
        **_auth(settings),
        **_retrying(12, sentinel=True),
    )


def pubsub_connection(pool: ConnectionPool) -> AbstractConnection:
    """A connection as ``pool`` makes them, for the hub's pub/sub, with no read timeout: it
    waits for messages as long as none come, and notices a dead link by its own PINGs."""
    options = {**pool.connection_kwargs, "socket_timeout": None}
    connection: AbstractConnection = pool.connection_class(**options)
    return connection


def web_client(pool: ConnectionPool) -> Redis:
    return Redis(connection_pool=pool)


def arq_settings(settings: Settings) -> RedisSettings:
    """ARQ's connection settings for the workers: a dropped connection or a restarting
    Redis is retried with backoff, for as long as it takes, instead of ending the worker
    (ARQ's poll loop exits on the first error it does not expect)."""
    base = RedisSettings.from_dsn(settings.redis_url)
    retrying = _retrying(-1)
    base.retry = retrying["retry"]
    base.retry_on_error = retrying["retry_on_error"]
    base.retry_on_timeout = True
    # At startup too: a worker started before its Redis waits for it.
    base.conn_retries = 1_000_000
    base.conn_retry_delay = 1
    return base


def arq_pool(settings: Settings) -> ArqRedis | None:
    """With Sentinel, the workers' ARQ pool, made here rather than by ARQ: ARQ's own
    Sentinel pool passes none of the retry settings on, and its worker would exit at a
    failover. It only makes objects (it connects when first used), so a worker settings
    class may hold it. None without Sentinel (``arq_settings`` does)."""
    if not settings.redis_sentinels:
        return None
    pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master,
        _sentinel(settings),
        **_auth(settings),
        **_retrying(-1, sentinel=True),
    )
    return ArqRedis(pool, default_queue_name=settings.queue_name)
