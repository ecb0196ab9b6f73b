"""Prometheus metrics, each set in a registry of its own (no process-global state).

The web app serves its own at ``GET /metrics``; a worker serves its own on
``JOBHUB_WORKER_METRICS_PORT`` when that is set (scrape every worker there).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ArchiveMetrics", "WebMetrics", "WorkerMetrics"]


class WebMetrics:
    def __init__(
        self, open_streams: Callable[[], float], subscriptions: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        self.enqueued = Counter(
            "jobhub_jobs_enqueued",
            "Jobs enqueued, by function.",
            ["function"],
            registry=self.registry,
        )
        self.delivered = Counter(
            "jobhub_snapshots_delivered", "SSE events sent to clients.", registry=self.registry
        )
        Gauge("jobhub_open_streams", "Open SSE streams.", registry=self.registry).set_function(
            open_streams
        )
        Gauge(
            "jobhub_fanout_subscriptions",
            "Jobs this process's pub/sub connection is subscribed to.",
            registry=self.registry,
        ).set_function(subscriptions)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ended = Counter(
            "jobhub_jobs_ended",
            "Jobs that ended on this worker, by function and status.",
            ["function", "status"],
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "jobhub_snapshot_write_seconds",
            "Time for one round trip of snapshot writes to Redis.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )


class ArchiveMetrics:
    """The archiver's (``jobhub archive run --metrics-port``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.feed_length = Gauge(
            "jobhub_archive_feed_length",
            "Ended jobs in the feed, not archived yet (capped: JOBHUB_ARCHIVE_FEED_MAX).",
            registry=self.registry,
        )
        self.archived = Counter(
            "jobhub_archive_jobs_archived", "Jobs written to the archive.", registry=self.registry
        )
        self.missed = Counter(
            "jobhub_archive_jobs_missed",
            "Fed jobs Redis no longer held when the archiver came to them.",
            registry=self.registry,
        )
        self.failures = Counter(
            "jobhub_archive_batch_failures",
            "Batches the database refused or could not take (retried).",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "jobhub_archive_batch_seconds",
            "Time to write one batch (read from Redis, commit in the database).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )
