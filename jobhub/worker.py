"""ARQ worker settings with jobhub's lifecycle around every job function.

``worker_settings.py`` at the repository root is all a deployment needs:

    WorkerSettings = worker_settings([demo.count, demo.fail], Settings.from_env())

and ``arq worker_settings.WorkerSettings`` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arq.connections import RedisSettings
from prometheus_client import start_http_server

from .batch import WriteBatch
from .logs import configure as configure_logs
from .metrics import WorkerMetrics
from .recovery import Recovery, new_worker_id
from .reporter import WRITER, JobFunction, lifecycle
from .settings import Settings
from .store import Store
from .webhooks import Deliveries

__all__ = ["DELIVERIES", "METRICS_SERVER", "RECOVERY", "UNDO_LOGS", "worker_settings"]

UNDO_LOGS = "jobhub.logs"

METRICS_SERVER = "jobhub.metrics"
"""Key of the worker's metrics HTTP server in ARQ's ``ctx`` (if a port is set)."""

DELIVERIES = "jobhub.webhooks"
"""Key of the worker's webhook ``Deliveries`` in ARQ's ``ctx``."""

RECOVERY = "jobhub.recovery"
"""Key of the worker's ``Recovery`` (heartbeat and reaper) in ARQ's ``ctx``."""


def worker_settings(functions: Sequence[JobFunction], settings: Settings) -> type:
    """A class for ARQ's CLI: the wrapped functions and the worker's Redis and timing."""
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise ValueError(f"two job functions share a name: {names}")

    tries = {f.name: f.max_tries or settings.max_tries for f in functions}

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx[UNDO_LOGS] = configure_logs(settings.log_format)
        store = Store(
            ctx["redis"],
            result_ttl_seconds=settings.result_ttl_seconds,
            history_limit=settings.history_limit,
        )
        worker_id = new_worker_id()
        metrics = WorkerMetrics()
        ctx[WRITER] = WriteBatch(store, owner=worker_id, metrics=metrics)
        if settings.worker_metrics_port is not None:
            ctx[METRICS_SERVER], _ = start_http_server(
                settings.worker_metrics_port, registry=metrics.registry
            )
        ctx[RECOVERY] = Recovery(
            ctx["redis"],
            store,
            worker_id,
            tries=tries,
            default_tries=settings.max_tries,
            queue_name=settings.queue_name,
            heartbeat=settings.worker_heartbeat_seconds,
            lost_after=settings.worker_lost_after_seconds,
        )
        await ctx[RECOVERY].start()
        if settings.webhook_secret:
            ctx[DELIVERIES] = Deliveries(
                ctx["redis"],
                secret=settings.webhook_secret,
                allow_private=settings.webhook_allow_private,
                max_attempts=settings.webhook_max_attempts,
                backoff=settings.webhook_backoff_seconds,
            )
            await ctx[DELIVERIES].start()
        await store.announce_functions(names)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        for service in (RECOVERY, DELIVERIES):
            if service in ctx:
                await ctx[service].aclose()
        if METRICS_SERVER in ctx:
            ctx[METRICS_SERVER].shutdown()
        if UNDO_LOGS in ctx:
            ctx[UNDO_LOGS]()

    return type(
        "WorkerSettings",
        (),
        {
            "functions": [
                lifecycle(f, settings.job_timeout_seconds, settings.max_tries) for f in functions
            ],
            "max_tries": settings.max_tries,
            "on_startup": on_startup,
            "on_shutdown": on_shutdown,
            "redis_settings": RedisSettings.from_dsn(settings.redis_url),
            "queue_name": settings.queue_name,
            # ARQ only learns of new jobs by polling; this bounds enqueue -> started.
            "poll_delay": settings.poll_delay_seconds,
            "max_jobs": settings.max_jobs,
            # POST /jobs/{id}/cancel asks ARQ to abort: a queued job is skipped, a running
            # one cancelled.
            "allow_abort_jobs": True,
            # A terminal snapshot lives exactly as long as ARQ's result, never shorter.
            "keep_result": settings.result_ttl_seconds,
        },
    )
