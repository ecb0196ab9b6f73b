"""Every Redis key and channel name jobhub uses, and nowhere else are they spelled.

ARQ's own keys (``arq:queue``, ``arq:job:<id>``, …) are ARQ's business; these sit beside
them under their own prefix so that one ``SCAN jobhub:*`` shows all of jobhub's state.
"""

from __future__ import annotations

__all__ = [
    "EVENTS",
    "FUNCTIONS",
    "JOBS",
    "PREFIX",
    "WEBHOOKS",
    "WORKERS",
    "job_channel",
    "job_history",
    "job_snapshot",
    "worker_alive",
    "worker_jobs",
]

PREFIX = "jobhub:"

JOBS = PREFIX + "jobs"
"""Sorted set of every job, scored by creation time (µs), for listing newest first. Its
members are the ``job_id`` as JSON strings; entries of expired jobs are pruned on reading."""

WEBHOOKS = PREFIX + "webhooks"
"""Sorted set of jobs whose webhook is to be delivered, scored by when (ms)."""

EVENTS = PREFIX + "events"
"""Pub/sub channel on which every snapshot of every job is published too (dashboards)."""

FUNCTIONS = PREFIX + "functions"
"""Hash: function name -> when a worker last announced it. The web app accepts only these."""


def job_snapshot(job_id: str) -> str:
    """Hash holding a job's latest snapshot: ``seq``, ``status`` and ``data`` (the JSON)."""
    return f"{PREFIX}job:{job_id}"


def job_history(job_id: str) -> str:
    """List of every snapshot the job had, oldest first, capped (``JOBHUB_HISTORY_LIMIT``)."""
    return f"{PREFIX}job:{job_id}:history"


def job_channel(job_id: str) -> str:
    """Pub/sub channel on which every new snapshot of the job is published."""
    return f"{PREFIX}job:{job_id}:updates"


WORKERS = PREFIX + "workers"
"""Set of the ids of workers that have run (and may still hold) jobs."""


def worker_alive(worker_id: str) -> str:
    """Key a worker renews every heartbeat; it expires when the worker stops."""
    return f"{PREFIX}worker:{worker_id}"


def worker_jobs(worker_id: str) -> str:
    """Set of the jobs a worker is at work on (their ``job_id`` as JSON strings)."""
    return f"{PREFIX}worker:{worker_id}:jobs"
