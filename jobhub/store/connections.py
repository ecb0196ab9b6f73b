"""Redis connections for every part of jobhub: the one place that decides how a Redis
command times out, is tried again and backs off (``RedisPolicy``), and that tells a plain
Redis from one behind Redis Sentinel.

With ``JOBHUB_REDIS_SENTINELS`` set, every connection (the web app's command pool, its
pub/sub connection, the workers' ARQ pool) asks the sentinels for the current master when
it connects, so after a failover each part reconnects to the new master by itself: a
command that meets the old master gone is retried with backoff until the sentinels name the
new one. ``REDIS_URL`` then gives only the password and the database.

A worker waits out any Redis trouble instead of exiting (``arq_pool``): ARQ's poll loop
ends the worker process on the first error it does not expect, so the workers' client
retries every connect and command for as long as it takes, and a transaction whose WATCH
a dropped connection lost is watched again or aborted the way ARQ expects (``WatchError``
from EXEC), never failed from a read in between.

    pool = web_pool(settings)                       # for the web app (and its hub)
    redis = web_client(pool)
    arq = arq_pool(settings)                        # for the workers (ARQ's redis_pool)
    writes = writer_client(settings)                # a worker's snapshot writes
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    TimeoutError,
    WatchError,
)

from jobhub.core.settings import Settings

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "RedisPolicy",
    "SentinelBlockingConnectionPool",
    "WorkerConnectionPool",
    "WorkerPipeline",
    "WorkerSentinelConnectionPool",
    "pubsub_connection",
    "web_client",
    "web_pool",
    "worker_pool",
    "writer_client",
]

logger = logging.getLogger("jobhub.redis")

BACKOFF_BASE_SECONDS = 0.05
"""The wait before a failed command's second try; it doubles for each try after."""
BACKOFF_CAP_SECONDS = 2.0
"""The longest wait between two tries: how soon a command goes through once Redis is back."""


@dataclass(frozen=True, slots=True)
class RedisPolicy:
    """How a kind of connection treats a Redis that fails: how long one try of a command
    (and of a connect) may wait for it, and how many times a command whose connection
    failed is tried again, on a new connection, with exponential backoff in between.

        policy = RedisPolicy.for_web(settings)
        pool = BlockingConnectionPool.from_url(url, **policy.connection_kwargs())
    """

    retries: int
    """Tries after the first; negative: for as long as it takes."""
    timeout: float | None
    """The longest one try waits for a reply; None: as long as Redis takes."""
    connect_timeout: float
    """The longest one connect waits."""
    sentinel: bool = False

    @classmethod
    def for_web(cls, settings: Settings) -> RedisPolicy:
        """A request answers 503 after a few tries rather than hold its client; with
        Sentinel, after long enough for a failover to name the new master (about 12 s).

        It also gives up on a Redis that does not answer (stopped, or stalled) after
        ``JOBHUB_REDIS_TIMEOUT``, each try: without a read timeout a request would hold its
        connection, and then the pool, for as long as Redis stays silent."""
        sentinel = bool(settings.redis_sentinels)
        return cls(
            retries=12 if sentinel else 3,
            timeout=settings.redis_timeout_seconds,
            connect_timeout=settings.redis_timeout_seconds,
            sentinel=sentinel,
        )

    @classmethod
    def for_workers(cls, settings: Settings) -> RedisPolicy:
        """A worker tries again for as long as it takes: there is nobody to answer 503 to,
        and ARQ ends the worker process on the first error its poll loop does not expect.

        No read timeout, as ARQ's own pool has none: a job's writes wait for their
        replicas (``JOBHUB_REDIS_WAIT_TIMEOUT``, any length) on these connections, and a
        timed-out write would be sent again."""
        return cls(
            retries=-1,
            timeout=None,
            connect_timeout=settings.redis_timeout_seconds,
            sentinel=bool(settings.redis_sentinels),
        )

    def retry(self) -> Retry:
        return Retry(
            ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS),
            retries=self.retries,
        )

    def connection_kwargs(self) -> dict[str, Any]:
        """What a pool hands to each connection it makes, which is where redis-py applies
        them.

        redis-py retries a connect in two places: the connection's own connect (to one
        address) and, for Sentinel, around it, asking the sentinels for the master each
        time. With Sentinel a refused connect (``OSError``) must not be retried in the inner
        place, or it would knock on the dead old master for ever and never ask for the new
        one. (No ``retry_on_timeout``: redis-py would append to this list at every
        connection it makes, and redis' ``TimeoutError`` is in it already.)"""
        errors: list[type[Exception]] = [ConnectionError, TimeoutError]
        if not self.sentinel:
            errors.append(OSError)
        return {
            "retry": self.retry(),
            "retry_on_error": errors,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.connect_timeout,
        }


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


def _sentinel(settings: Settings) -> Sentinel:
    # (redis-py leaves its Sentinel classes unannotated.)
    return Sentinel(  # type: ignore[no-untyped-call]
        list(settings.redis_sentinels), socket_timeout=settings.redis_timeout_seconds
    )


def web_pool(settings: Settings) -> ConnectionPool:
    """The web process's command pool: bounded, and a burst waits for a connection (up to
    ``JOBHUB_REDIS_TIMEOUT``) rather than opening hundreds of them to Redis. Commands are
    tried as ``RedisPolicy.for_web`` says."""
    policy = RedisPolicy.for_web(settings)
    if not settings.redis_sentinels:
        return BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_timeout_seconds,
            **policy.connection_kwargs(),
        )
    return SentinelBlockingConnectionPool(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master,
        _sentinel(settings),
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_seconds,
        **_auth(settings),
        **policy.connection_kwargs(),
    )


def pubsub_connection(pool: ConnectionPool) -> AbstractConnection:
    """A connection as ``pool`` makes them, for the hub's pub/sub, with no read timeout: it
    waits for messages as long as none come, and notices a dead link by its own PINGs."""
    options = {**pool.connection_kwargs, "socket_timeout": None}
    connection: AbstractConnection = pool.connection_class(**options)
    return connection


def web_client(pool: ConnectionPool) -> Redis:
    return Redis(connection_pool=pool)


class _ConnectsUntilItCan:
    """A pool whose ``get_connection`` waits, with its connections' backoff, until Redis
    takes the connection.

    redis-py retries a command, and the TCP connect under it, but not what the pool does
    between them: the handshake on a new connection (a Redis at its client limit closes
    it with an error, one still loading its data answers ``LOADING``, one going away
    resets it) and the check that a reused one is clean. Their ``ConnectionError`` would
    reach ARQ's poll loop and end the worker. A wrong password is not waited out: it ends
    the worker, saying so."""

    connection_kwargs: dict[str, Any]

    async def get_connection(self, *args: Any, **options: Any) -> AbstractConnection:
        get: Callable[..., Awaitable[AbstractConnection]] = super().get_connection  # type: ignore[misc]
        retry: Retry = self.connection_kwargs["retry"]
        warned = False

        async def failed(error: Exception) -> None:
            nonlocal warned
            if isinstance(error, AuthenticationError | AuthorizationError):
                raise error
            if not warned:
                logger.warning("cannot connect to Redis (%s); trying again", error)
                warned = True

        return await retry.call_with_retry(lambda: get(*args, **options), failed)


class WorkerConnectionPool(_ConnectsUntilItCan, ConnectionPool):
    """The workers' pool on a plain Redis: ``_ConnectsUntilItCan``."""


class WorkerSentinelConnectionPool(_ConnectsUntilItCan, SentinelConnectionPool):
    """The workers' pool behind Redis Sentinel: ``_ConnectsUntilItCan``."""


class WorkerPipeline(Pipeline):
    """A pipeline whose WATCH survives a dropped connection as far as WATCH allows.

    redis-py raises ``WatchError`` from the first command after a WATCH whose connection
    dropped (it cannot retry it: the WATCH went with the connection), and ARQ catches
    ``WatchError`` only from EXEC: from ``start_jobs``' reads it ended the worker. Here the
    keys are watched again on a new connection and the command retried. If no reply had
    yet been read under the lost WATCH this is as if the WATCH had come later, and the
    transaction goes on; otherwise a key may have changed between a reply and the new
    WATCH, so EXEC is not sent and ``execute`` raises ``WatchError``, as for a changed key:
    ARQ's ``start_jobs`` then leaves the job queued for its next poll. (``enqueue_job``
    reads once, so there a lost WATCH is always watched again.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watched: tuple[Any, ...] = ()
        self._read_under_watch = False
        self._watch_lost = False

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        watched, read, lost = self._watched, self._read_under_watch, self._watch_lost
        while True:
            try:
                # (redis-py leaves its pipeline methods unannotated.)
                reply = await super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]
                break
            except WatchError:
                # Raised here only for a lost connection (a changed key fails EXEC, which
                # is not sent this way), after redis-py reset the pipeline and this state.
                lost = lost or read
                await super().immediate_execute_command("WATCH", *watched)  # type: ignore[no-untyped-call]
                self._watched, self._read_under_watch, self._watch_lost = watched, read, lost
        command = str(args[0]).upper()
        if command == "WATCH":
            self._watched = (*self._watched, *args[1:])
        elif command == "UNWATCH":
            self._watched, self._read_under_watch, self._watch_lost = (), False, False
        elif self._watched:
            self._read_under_watch = True
        return reply

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self._watch_lost:
            await self.reset()
            raise WatchError("the connection was lost while watching: the keys may have changed")
        return await super().execute(raise_on_error)

    async def reset(self) -> None:
        await super().reset()  # type: ignore[no-untyped-call]
        self._watched, self._read_under_watch, self._watch_lost = (), False, False


def worker_pool(settings: Settings) -> ConnectionPool:
    """The workers' connection pool: commands and connects are tried as
    ``RedisPolicy.for_workers`` says, for as long as Redis is away (see
    ``WorkerConnectionPool``). It only makes objects (it connects when first used)."""
    kwargs = RedisPolicy.for_workers(settings).connection_kwargs()
    if settings.redis_sentinels:
        return WorkerSentinelConnectionPool(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master, _sentinel(settings), **_auth(settings), **kwargs
        )
    return WorkerConnectionPool.from_url(settings.redis_url, **kwargs)


def writer_client(settings: Settings) -> Redis:
    """A worker's client for its snapshot writes (``WriteBatch``): one connection of its own,
    tried as ``RedisPolicy.for_workers`` says.

    A worker sends its writes one batch at a time, so one connection carries them all, and
    holding it spares each round trip the pool's checkout and return (~25 µs of the
    worker's CPU, measured; a job's writes take one round trip)."""
    return Redis(connection_pool=worker_pool(settings), single_connection_client=True)
