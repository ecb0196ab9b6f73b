"""Configuration, read from the environment once and then passed around explicitly.

    settings = Settings.from_env()          # at the composition root only
    app = create_app(settings)

Nothing else in jobhub reads a setting from ``os.environ``: ``jobhub dev`` only asks whether
``REDIS_URL`` is set (it starts a private Redis where it is not), and hands the environment on
to the processes it starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobhub.core.exceptions import ConfigError

__all__ = ["Settings"]

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob jobhub has, with the environment variable that sets it."""

    redis_url: str = DEFAULT_REDIS_URL
    """``REDIS_URL``: the Redis both the web app and the workers use (with Sentinel: its
    password and database number only; the master comes from the sentinels)."""
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    """``JOBHUB_REDIS_SENTINELS``: ``host:port,host:port,…`` of Redis Sentinels; with them
    every part of jobhub asks the sentinels for the master, and follows a failover."""
    redis_sentinel_master: str = "mymaster"
    """``JOBHUB_REDIS_SENTINEL_MASTER``: the name the sentinels monitor the master under."""
    redis_wait_replicas: int | None = None
    """``JOBHUB_REDIS_WAIT_REPLICAS``: replicas that must have a write before it is
    acknowledged and published (Redis's WAIT); 1 by default with sentinels, 0 without.
    It is what keeps a failover from taking back a snapshot a reader already saw."""
    redis_wait_timeout_seconds: float = 0.5
    """``JOBHUB_REDIS_WAIT_TIMEOUT``: the longest a write waits for its replicas; past it,
    it is published anyway (the guarantee then holds only once a replica is back)."""
    queue_name: str = "arq:queue"
    """``JOBHUB_QUEUE``: the ARQ queue jobs go to (ARQ's default queue)."""
    max_body_bytes: int = 1024 * 1024
    """``JOBHUB_MAX_BODY_BYTES``: request bodies above this are refused with 413."""
    heartbeat_seconds: float = 15.0
    """``JOBHUB_HEARTBEAT``: seconds between SSE comment lines that keep proxies from idling out."""
    send_timeout_seconds: float = 30.0
    """``JOBHUB_SEND_TIMEOUT``: a stream whose socket accepts nothing for this long is ended."""
    result_ttl_seconds: int = 24 * 3600
    """``JOBHUB_RESULT_TTL``: how long a terminal snapshot (and ARQ's result) is kept."""
    poll_delay_seconds: float = 0.01
    """``JOBHUB_POLL_DELAY``: how often an idle worker polls the queue (ARQ's default is 0.5)."""
    job_timeout_seconds: float = 300.0
    """``JOBHUB_JOB_TIMEOUT``: a job's time limit unless its ``@job(timeout=...)`` sets one;
    past it the job is ``failed`` with ``error.type`` ``TimeoutError``."""
    max_tries: int = 5
    """``JOBHUB_MAX_TRIES``: tries a job gets when it raises ``Retry`` (``@job(max_tries=)``
    overrides it)."""
    worker_heartbeat_seconds: float = 1.0
    """``JOBHUB_WORKER_HEARTBEAT``: how often a worker says it is alive and looks for lost
    workers."""
    worker_lost_after_seconds: float = 5.0
    """``JOBHUB_WORKER_LOST_AFTER``: a worker silent this long is lost; its jobs are
    re-queued or failed (so within this plus one heartbeat)."""
    worker_metrics_port: int | None = None
    """``JOBHUB_WORKER_METRICS_PORT``: where a worker serves Prometheus metrics (off if
    unset; give each worker on a host its own port)."""
    max_jobs: int = 10
    """``JOBHUB_MAX_JOBS``: jobs one worker process runs at once."""
    redis_max_connections: int = 2
    """``JOBHUB_REDIS_MAX_CONNECTIONS``: the web process's command pool (the pub/sub
    connection of the fan-out comes on top)."""
    redis_timeout_seconds: float = 5.0
    """``JOBHUB_REDIS_TIMEOUT``: the longest any one wait on Redis lasts before that try
    counts as failed (a connect, a reply, a pooled connection, a stream open's wait for an
    unreachable Redis to come back, then 503); ``store/connections.py``'s ``RedisPolicy``
    decides what is tried again. While Redis is up, a stream open waits as long as it
    takes: its read is retried, its subscription awaited."""
    api_keys: tuple[str, ...] = ()
    """``JOBHUB_API_KEYS``: comma-separated keys; with none the API is open to anyone."""
    token_secret: str | None = None
    """``JOBHUB_TOKEN_SECRET``: signs job-scoped tokens, sessions and scoped tokens; needed
    when there are API keys, and the same in every web process. ``new,old`` rotates it: the
    first signs, either verifies."""
    token_ttl_seconds: int = 24 * 3600
    """``JOBHUB_TOKEN_TTL``: how long a job-scoped token is valid."""
    webhook_secret: str | None = None
    """``JOBHUB_WEBHOOK_SECRET``: signs webhook deliveries; jobs may have a ``callback_url``
    only when it is set (on the web processes and the workers)."""
    webhook_allow_private: bool = False
    """``JOBHUB_WEBHOOK_ALLOW_PRIVATE``: allow callback URLs on private, loopback or
    link-local addresses (refused by default: they would let callers reach internal hosts)."""
    webhook_max_attempts: int = 5
    """``JOBHUB_WEBHOOK_MAX_ATTEMPTS``: deliveries tried before a webhook is given up."""
    webhook_backoff_seconds: float = 1.0
    """``JOBHUB_WEBHOOK_BACKOFF``: wait before the second try, doubling for each after."""
    webhook_timeout_seconds: float = 10.0
    """``JOBHUB_WEBHOOK_TIMEOUT``: the whole of one delivery attempt (connecting, sending, the
    answer's status and headers); a receiver slower than that has failed this attempt."""
    cors_origins: tuple[str, ...] = ()
    """``JOBHUB_CORS_ORIGINS``: comma-separated origins whose pages may call the API from the
    browser, with credentials (cookies); none by default. No wildcard: with credentials a
    browser would refuse it, and it would hand job status to any site."""
    history_limit: int = 500
    """``JOBHUB_HISTORY_LIMIT``: snapshots kept in each job's history (the newest)."""
    output_limit: int = 10_000
    """``JOBHUB_OUTPUT_LIMIT``: output entries (log lines and chunks) kept per job (the
    newest); a reader whose place is older than the oldest kept is told how many it missed
    (a ``gap``), then reads on from the oldest kept."""
    output_max_bytes: int = 1 << 20
    """``JOBHUB_OUTPUT_MAX_BYTES``: the most one output entry (a log line or a chunk) may
    take as JSON; a bigger one raises ``OutputTooLarge`` in the job and is not stored. Every
    entry is published too, and Redis cuts a subscriber whose buffer passes 32 MB: 1 MiB
    keeps a burst of big entries well below that."""
    archive_url: str | None = None
    """``JOBHUB_ARCHIVE_URL``: the SQL database every ended job is archived to
    (``postgresql+asyncpg://user:pass@host/db`` or ``sqlite+aiosqlite:///path.db``); unset, no
    job is archived and nothing else changes. See docs/archive.md."""
    archive_output: bool = False
    """``JOBHUB_ARCHIVE_OUTPUT``: archive each job's output entries (log lines, partial
    results) too."""
    archive_keep_days: float | None = None
    """``JOBHUB_ARCHIVE_KEEP_DAYS``: days an archived job is kept after it ended (forever if
    unset); ``JOBHUB_ARCHIVE_KEEP_DAYS_FINISHED``, ``_FAILED`` and ``_CANCELED`` set it for
    one status."""
    archive_keep_days_finished: float | None = None
    """``JOBHUB_ARCHIVE_KEEP_DAYS_FINISHED``: as ``JOBHUB_ARCHIVE_KEEP_DAYS``, for finished jobs."""
    archive_keep_days_failed: float | None = None
    """``JOBHUB_ARCHIVE_KEEP_DAYS_FAILED``: as ``JOBHUB_ARCHIVE_KEEP_DAYS``, for failed jobs."""
    archive_keep_days_canceled: float | None = None
    """``JOBHUB_ARCHIVE_KEEP_DAYS_CANCELED``: as ``JOBHUB_ARCHIVE_KEEP_DAYS``, for canceled jobs."""
    archive_feed_max: int = 100_000
    """``JOBHUB_ARCHIVE_FEED_MAX``: ended jobs the feed holds for the archiver while it is
    behind (the database down); past it the oldest are dropped, unarchived. The archiver
    warns once it is half full (metric ``jobhub_archive_feed_length``)."""
    log_format: str = "text"
    """``JOBHUB_LOG_FORMAT``: ``text`` or ``json`` for jobhub's own log lines."""
    gc_threshold: tuple[int, int, int] | None = (50_000, 50, 50)
    """``JOBHUB_GC_THRESHOLD``: the web process's ``gc.set_threshold`` while the app runs
    (``default`` keeps Python's 700,10,10). Thousands of open streams are a large live
    heap; with Python's defaults the collector rescans it so often that, measured with
    bench/fanout.py at 3,000 streams, it set the p99 (785 ms, against 285 ms tuned)."""

    @property
    def wait_replicas(self) -> int:
        """Replicas a write waits for: as set, else 1 with sentinels and 0 without."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (``os.environ`` by default).

        >>> Settings.from_env({"REDIS_URL": "redis://db:6379/1"}).redis_url
        'redis://db:6379/1'
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field_name, (var, parse) in _ENV.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[field_name] = parse(raw)
            except ValueError as exc:
                expected = _EXPECTED.get(parse) or str(exc)
                raise ConfigError(f"{var}={raw!r} is not valid: expected {expected}") from None
        return cls(**values)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "redis_wait_replicas" and value is not None and value >= 0:
                continue  # 0: writes wait for no replica
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                name = f"{_ENV[field.name][0]} ({field.name})" if field.name in _ENV else field.name
                raise ConfigError(f"{name} must be positive, got {value!r}")
        if self.gc_threshold is not None and (
            len(self.gc_threshold) != 3 or min(self.gc_threshold) <= 0
        ):
            raise ConfigError(
                f"gc_threshold must be three positive integers, got {self.gc_threshold}"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"JOBHUB_LOG_FORMAT must be text or json, got {self.log_format!r}")
        if self.api_keys and not self.token_secret:
            raise ConfigError(
                "JOBHUB_TOKEN_SECRET is needed when JOBHUB_API_KEYS is set: "
                "`jobhub secret` prints a fresh one"
            )
        if self.archive_url is not None and not self.archive_url.startswith(_ARCHIVE_SCHEMES):
            raise ConfigError(
                f"JOBHUB_ARCHIVE_URL must start with {' or '.join(_ARCHIVE_SCHEMES)}, "
                f"got {self.archive_url!r}"
            )
        if self.archive_url is not None:
            driver = self.archive_url.split("+", 1)[1].split(":", 1)[0]
            if importlib.util.find_spec(driver) is None:
                # Said here, by every process at its start, rather than as a bare
                # ModuleNotFoundError from the first connection.
                raise ConfigError(
                    f"JOBHUB_ARCHIVE_URL needs the {driver} driver, which is not installed: "
                    "pip install 'jobhub[archive]'"
                )
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"REDIS_URL must be a redis://, rediss:// or unix:// URL, got {self.redis_url!r}"
            )


_ARCHIVE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
"""The archive's drivers: the two jobhub is tested with."""


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    found = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        host, colon, port = part.rpartition(":")
        number = int(port) if colon and port.isascii() and port.isdigit() else 0
        if not host or not 0 < number < 65536:
            raise ValueError(f"comma-separated host:port pairs, like 10.0.0.1:26379; not {part!r}")
        found.append((host.strip("[]"), number))
    if not found:
        raise ValueError("at least one host:port")
    return tuple(found)


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in {"1", "true", "yes", "0", "false", "no"}:
        raise ValueError("true or false (or 1/0, yes/no)")
    return value in {"1", "true", "yes"}


def _keys(raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        # A browser sends its Origin as scheme://host[:port], nothing more; anything else
        # here would never match, and "*" would hand job status to every site.
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(
                "comma-separated origins like https://app.example.com or "
                f"http://localhost:3000 (scheme://host[:port], no path, no '*'); not {origin!r}"
            )
    return origins


def _gc_threshold(raw: str) -> tuple[int, int, int] | None:
    if raw.strip().lower() == "default":
        return None
    try:
        first, second, third = (int(part) for part in raw.split(","))
    except ValueError:
        raise ValueError("three comma-separated whole numbers (50000,50,50) or default") from None
    return first, second, third


_EXPECTED: dict[Callable[[str], Any], str] = {int: "a whole number", float: "a number"}
"""What the built-in parsers accept; jobhub's own say it in their ValueError."""

_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "redis_url": ("REDIS_URL", str),
    "redis_sentinels": ("JOBHUB_REDIS_SENTINELS", _sentinels),
    "redis_sentinel_master": ("JOBHUB_REDIS_SENTINEL_MASTER", str),
    "redis_wait_replicas": ("JOBHUB_REDIS_WAIT_REPLICAS", int),
    "redis_wait_timeout_seconds": ("JOBHUB_REDIS_WAIT_TIMEOUT", float),
    "queue_name": ("JOBHUB_QUEUE", str),
    "max_body_bytes": ("JOBHUB_MAX_BODY_BYTES", int),
    "heartbeat_seconds": ("JOBHUB_HEARTBEAT", float),
    "send_timeout_seconds": ("JOBHUB_SEND_TIMEOUT", float),
    "result_ttl_seconds": ("JOBHUB_RESULT_TTL", int),
    "poll_delay_seconds": ("JOBHUB_POLL_DELAY", float),
    "job_timeout_seconds": ("JOBHUB_JOB_TIMEOUT", float),
    "max_tries": ("JOBHUB_MAX_TRIES", int),
    "worker_heartbeat_seconds": ("JOBHUB_WORKER_HEARTBEAT", float),
    "worker_lost_after_seconds": ("JOBHUB_WORKER_LOST_AFTER", float),
    "worker_metrics_port": ("JOBHUB_WORKER_METRICS_PORT", int),
    "max_jobs": ("JOBHUB_MAX_JOBS", int),
    "redis_max_connections": ("JOBHUB_REDIS_MAX_CONNECTIONS", int),
    "redis_timeout_seconds": ("JOBHUB_REDIS_TIMEOUT", float),
    "api_keys": ("JOBHUB_API_KEYS", _keys),
    "token_secret": ("JOBHUB_TOKEN_SECRET", str),
    "token_ttl_seconds": ("JOBHUB_TOKEN_TTL", int),
    "webhook_secret": ("JOBHUB_WEBHOOK_SECRET", str),
    "webhook_allow_private": ("JOBHUB_WEBHOOK_ALLOW_PRIVATE", _flag),
    "webhook_max_attempts": ("JOBHUB_WEBHOOK_MAX_ATTEMPTS", int),
    "webhook_backoff_seconds": ("JOBHUB_WEBHOOK_BACKOFF", float),
    "webhook_timeout_seconds": ("JOBHUB_WEBHOOK_TIMEOUT", float),
    "cors_origins": ("JOBHUB_CORS_ORIGINS", _origins),
    "history_limit": ("JOBHUB_HISTORY_LIMIT", int),
    "output_limit": ("JOBHUB_OUTPUT_LIMIT", int),
    "output_max_bytes": ("JOBHUB_OUTPUT_MAX_BYTES", int),
    "archive_url": ("JOBHUB_ARCHIVE_URL", str),
    "archive_output": ("JOBHUB_ARCHIVE_OUTPUT", _flag),
    "archive_keep_days": ("JOBHUB_ARCHIVE_KEEP_DAYS", float),
    "archive_keep_days_finished": ("JOBHUB_ARCHIVE_KEEP_DAYS_FINISHED", float),
    "archive_keep_days_failed": ("JOBHUB_ARCHIVE_KEEP_DAYS_FAILED", float),
    "archive_keep_days_canceled": ("JOBHUB_ARCHIVE_KEEP_DAYS_CANCELED", float),
    "archive_feed_max": ("JOBHUB_ARCHIVE_FEED_MAX", int),
    "log_format": ("JOBHUB_LOG_FORMAT", str),
    "gc_threshold": ("JOBHUB_GC_THRESHOLD", _gc_threshold),
}
