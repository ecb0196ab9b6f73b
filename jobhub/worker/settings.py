"""ARQ worker settings with jobhub's lifecycle around every job function.

Each worker process runs its jobs inside jobhub's wrapper (jobhub/worker/runner.py) and a
background watch (jobhub/worker/recovery.py): heartbeats, recovery of lost workers' jobs, and the
reconciler. ``worker_settings.py`` at the repository root is all a deployment needs:

    WorkerSettings = worker_settings([demo.count, demo.fail], Settings.from_env())

and ``arq worker_settings.WorkerSettings`` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import start_http_server

from jobhub.core.logs import configure as configure_logs
from jobhub.core.metrics import WorkerMetrics
from jobhub.core.settings import Settings
from jobhub.lifecycle.arq import ARQ_TIMEOUT, arq_pool, arq_settings
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.lifecycle.reconciler import Reconciler
from jobhub.store.connections import writer_client
from jobhub.store.registry import Registry, new_worker_id
from jobhub.store.store import Store
from jobhub.store.writes import WriteBatch
from jobhub.webhooks.deliveries import Deliveries
from jobhub.worker.jobs import JobFunction
from jobhub.worker.recovery import Recovery
from jobhub.worker.runner import after_job_end, wrap
from jobhub.worker.runs import RUNTIME, Runs, WorkerRuntime

__all__ = [
    "DELIVERIES",
    "METRICS_SERVER",
    "RECOVERY",
    "UNDO_LOGS",
    "WRITER",
    "worker_settings",
]

UNDO_LOGS = "jobhub.logs"

METRICS_SERVER = "jobhub.metrics"
"""Key of the worker's metrics HTTP server in ARQ's ``ctx`` (if a port is set)."""

DELIVERIES = "jobhub.webhooks"
"""Key of the worker's webhook ``Deliveries`` in ARQ's ``ctx``."""

RECOVERY = "jobhub.recovery"
"""Key of the worker's ``Recovery`` (heartbeat and reaper) in ARQ's ``ctx``."""

WRITER = "jobhub.writer"
"""Key of the worker's client for its snapshot writes in ARQ's ``ctx``."""


def worker_settings(functions: Sequence[JobFunction], settings: Settings) -> type:
    """A class for ARQ's CLI: the wrapped functions and the worker's Redis and timing."""
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise ValueError(f"two job functions share a name: {names}")

    tries = {f.name: f.max_tries or settings.max_tries for f in functions}

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx[UNDO_LOGS] = configure_logs(settings.log_format)
        store = Store.from_settings(ctx["redis"], settings)
        ctx[WRITER] = writer_client(settings)
        worker_id = new_worker_id()
        metrics = WorkerMetrics()
        runs = Runs()
        batch = WriteBatch(
            Store.from_settings(ctx[WRITER], settings), owner=worker_id, metrics=metrics
        )
        ctx[RUNTIME] = WorkerRuntime(batch, worker_id, runs, settings.queue_name)
        if settings.worker_metrics_port is not None:
            ctx[METRICS_SERVER], _ = start_http_server(
                settings.worker_metrics_port, registry=metrics.registry
            )
        lifecycle = Lifecycle(ctx["redis"], store, queue_name=settings.queue_name)
        registry = Registry(
            ctx["redis"],
            lost_after=settings.worker_lost_after_seconds,
            queue_name=settings.queue_name,
        )
        ctx[RECOVERY] = Recovery(
            lifecycle,
            registry,
            Reconciler(
                lifecycle,
                registry,
                ctx["redis"],
                worker_id,
                # A worker that marked a job and stalled that long is lost anyway.
                mark_grace=settings.worker_lost_after_seconds,
            ),
            runs,
            worker_id,
            functions=names,
            tries=tries,
            default_tries=settings.max_tries,
            heartbeat=settings.worker_heartbeat_seconds,
            lost_after=settings.worker_lost_after_seconds,
        )
        # Its first beat also announces the functions, so the web app accepts them.
        await ctx[RECOVERY].start()
        if settings.webhook_secret:
            ctx[DELIVERIES] = Deliveries(
                ctx["redis"],
                secret=settings.webhook_secret,
                allow_private=settings.webhook_allow_private,
                max_attempts=settings.webhook_max_attempts,
                backoff=settings.webhook_backoff_seconds,
                timeout=settings.webhook_timeout_seconds,
            )
            await ctx[DELIVERIES].start()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        for service in (RECOVERY, DELIVERIES):
            if service in ctx:
                await ctx[service].aclose()
        if METRICS_SERVER in ctx:
            ctx[METRICS_SERVER].shutdown()
        if RUNTIME in ctx:
            await ctx[RUNTIME].batch.aclose()
        if WRITER in ctx:
            await ctx[WRITER].aclose(close_connection_pool=True)
        if UNDO_LOGS in ctx:
            ctx[UNDO_LOGS]()

    return type(
        "WorkerSettings",
        (),
        {
            "functions": [
                wrap(f, settings.job_timeout_seconds, settings.max_tries) for f in functions
            ],
            "max_tries": settings.max_tries,
            "on_startup": on_startup,
            "on_shutdown": on_shutdown,
            # A superseded run's end: put back what ARQ deleted of the newer run's.
            "after_job_end": after_job_end,
            # ARQ's own connection, for `arq --check` only: the worker runs on redis_pool.
            "redis_settings": arq_settings(settings),
            # A client of jobhub's own, so that no dropped connection, Redis restart or
            # failover ends the worker (jobhub/store/connections.py says how).
            "redis_pool": arq_pool(settings),
            # Jobs keep their own time limits (jobhub/worker/runner.py); ARQ's would also expire
            # in-progress keys under long jobs and start them twice.
            "job_timeout": ARQ_TIMEOUT,
            "queue_name": settings.queue_name,
            # ARQ only learns of new jobs by polling; this bounds enqueue -> started.
            "poll_delay": settings.poll_delay_seconds,
            "max_jobs": settings.max_jobs,
            # POST /jobs/{id}/cancel asks ARQ to abort: a queued job is skipped, a running
            # one cancelled.
            "allow_abort_jobs": True,
            # ARQ keeps a result only of a job it ends without running it (jobhub's
            # functions ask it to keep none: jobhub/lifecycle/arq.py), for the reconciler
            # to read; it lives as long as a terminal snapshot.
            "keep_result": settings.result_ttl_seconds,
        },
    )
