"""Every Redis key and channel name jobhub uses, and nowhere else are they spelled.

ARQ's own keys (``arq:queue``, ``arq:job:<id>``, …) are ARQ's business; these sit beside
them under their own prefix so that one ``SCAN jobhub:*`` shows all of jobhub's state.
"""

from __future__ import annotations

__all__ = [
    "ACTIVE",
    "ARCHIVE_FEED",
    "BATCH",
    "BATCHES",
    "BATCH_CHANGES",
    "BATCH_CHILDREN",
    "BATCH_UPDATES",
    "BATCH_WEBHOOKS",
    "COUNTS",
    "ENDED",
    "EVENTS",
    "JOBS",
    "PREFIX",
    "RECONCILER",
    "TAGGED",
    "TAGS_ACTIVE",
    "TAG_CHANGES",
    "TAG_UPDATES",
    "WEBHOOKS",
    "WORKERS",
    "batch",
    "batch_changes",
    "batch_channel",
    "batch_children",
    "ended_in",
    "job_channel",
    "job_deleted",
    "job_deliveries",
    "job_history",
    "job_output",
    "job_snapshot",
    "offered",
    "outbox",
    "revoked",
    "tag_changes",
    "tag_channel",
    "tagged",
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


def offered(queue_name: str) -> str:
    """Sorted set: function name -> when (ms, Redis clock) a worker on ``queue_name`` last
    offered it. Per queue: a worker on another queue never runs this queue's jobs, so its
    functions must not make the web app accept them."""
    return f"{PREFIX}offered:{queue_name}"


ACTIVE = PREFIX + "active"
"""Sorted set of the jobs not yet ended, scored by creation (ms): what the reconciler walks.
Its members, like those of ``JOBS``, are the ``job_id`` as JSON strings."""

COUNTS = PREFIX + "counts"
"""Hash: each status not final (as its JSON fragment, ``"queued"``) -> how many jobs have it
now; kept by the write scripts at every change of status."""

ENDED = PREFIX + "ended:"
"""Prefix of ``jobhub:ended:<minute>``: hash of final status -> jobs that ended in that
minute (Unix time // 60), kept two hours: the console's jobs-per-minute chart."""


def ended_in(minute: int) -> str:
    return f"{ENDED}{minute}"


RECONCILER = PREFIX + "reconciler"
"""Lease held by the one worker reconciling at a time."""


def job_snapshot(job_id: str) -> str:
    """Hash holding a job's latest snapshot: ``seq``, ``status`` and ``data`` (the JSON)."""
    return f"{PREFIX}job:{job_id}"


def job_history(job_id: str) -> str:
    """List of every snapshot the job had, oldest first, capped (``JOBHUB_HISTORY_LIMIT``)."""
    return f"{PREFIX}job:{job_id}:history"


def job_deliveries(job_id: str) -> str:
    """List of the job's webhook delivery attempts, oldest first, capped
    (``JOBHUB_WEBHOOK_MAX_ATTEMPTS``); it expires with the job's hash."""
    return f"{PREFIX}job:{job_id}:deliveries"


def job_deleted(job_id: str) -> str:
    """Tombstone of a deleted job: while it lives, nothing ARQ writes later for the id (the
    result of a run still ending) brings the job back; a new job created under the id
    clears it. It outlives ARQ's result (``JOBHUB_RESULT_TTL`` plus a margin)."""
    return f"{PREFIX}job:{job_id}:deleted"


def outbox(token: str) -> str:
    """List of what one round trip of writes publishes once a replica has it (used when
    writes wait for replicas: ``JOBHUB_REDIS_WAIT_REPLICAS``)."""
    return f"{PREFIX}outbox:{token}"


def job_output(job_id: str) -> str:
    """Stream of the job's output: its log lines and partial results, in the order written,
    capped (``JOBHUB_OUTPUT_LIMIT``), expiring with the job."""
    return f"{PREFIX}job:{job_id}:output"


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


TAGGED = PREFIX + "tagged:"
"""Prefix of ``jobhub:tagged:<tag>``: sorted set of the jobs created with the tag, scored
like ``JOBS`` (creation, µs), members the ``job_id`` as JSON strings. Written in the step
that creates the job; it lives while any of its jobs is not ended, then expires
``JOBHUB_RESULT_TTL`` after the last one ended (with that job); entries of jobs that
expired before are pruned on reading."""


def tagged(tag: str) -> str:
    return f"{TAGGED}{tag}"


TAGS_ACTIVE = PREFIX + "tags:active"
"""Hash: the key of each tag's index (``tagged``) -> how many of its jobs are not ended yet;
when it drops to zero the index gets its TTL."""

TAG_UPDATES = PREFIX + "tag-updates:"
"""Prefix of the pub/sub channel ``jobhub:tag-updates:<tag>``: every snapshot of every job
with the tag, its first included, as ``<version> <JSON>`` (``GET /events?tag=``)."""

TAG_CHANGES = PREFIX + "tag-changes:"
"""Prefix of ``jobhub:tag-changes:<tag>``: sorted set of the tag's jobs (``job_id`` as JSON)
scored by the version of each one's last change, a number that grows with every snapshot
of the tag's jobs (Redis's clock in µs, or one more than the last): where a stream of the
tag resumes from (``Last-Event-ID``). Capped to the jobs changed last, and expires with the
tag's index."""


def tag_channel(tag: str) -> str:
    return f"{TAG_UPDATES}{tag}"


def tag_changes(tag: str) -> str:
    return f"{TAG_CHANGES}{tag}"


def revoked(token_id: str) -> str:
    """Marks a scoped token revoked before it expires; it lives until the token's expiry."""
    return f"{PREFIX}revoked:{token_id}"


# -- batches (jobhub/core/batch.py) ---------------------------------------------------------

BATCHES = PREFIX + "batches"
"""Sorted set of every batch id (plain), scored by creation (µs): ``GET /batches``, newest
first; entries of expired batches are pruned on reading."""

BATCH_WEBHOOKS = PREFIX + "batch-webhooks"
"""Sorted set of batches whose webhook is to be delivered, scored by when (ms)."""

BATCH = PREFIX + "batch:"
"""Prefix of ``jobhub:batch:<id>``: hash of a batch's counts by status (each status's JSON
fragment -> how many children have it), ``total``, ``wsum`` and ``psum`` (its weights and
the weighted sum of its children's percents, in hundredths), ``seq``, ``sealed``,
``cancel``, ``status``, ``created_at``, ``updated_at`` and ``data`` (the snapshot JSON).
Written by the same scripts that write its children; it expires with them once ended."""

BATCH_CHILDREN = PREFIX + "batch-children:"
"""Prefix of ``jobhub:batch-children:<id>``: sorted set of the batch's children (``job_id``
as JSON strings) scored by their place in the batch (1, 2, ...); a retry takes the place of
the child it retries."""

BATCH_CHANGES = PREFIX + "batch-changes:"
"""Prefix of ``jobhub:batch-changes:<id>``: sorted set of the batch's children (``job_id``
as JSON) scored by the batch's ``seq`` at their last change: where a batch's stream
resumes from (``Last-Event-ID``)."""

BATCH_UPDATES = PREFIX + "batch-updates:"
"""Prefix of the pub/sub channel ``jobhub:batch-updates:<id>``: the batch's snapshots and
its children's, as ``B<seq> <JSON>`` and ``J<seq> <JSON>`` (``seq``: the batch's)."""


def batch(batch_id: str) -> str:
    return f"{BATCH}{batch_id}"


def batch_children(batch_id: str) -> str:
    return f"{BATCH_CHILDREN}{batch_id}"


def batch_changes(batch_id: str) -> str:
    return f"{BATCH_CHANGES}{batch_id}"


def batch_channel(batch_id: str) -> str:
    return f"{BATCH_UPDATES}{batch_id}"


ARCHIVE_FEED = PREFIX + "archive:feed"
"""Stream of jobs to archive (``JOBHUB_ARCHIVE_URL``): the step that ends a job appends its
``job_id`` (as JSON) here; the archivers read it as one consumer group, and delete what
they have written. Capped (``JOBHUB_ARCHIVE_FEED_MAX``)."""
