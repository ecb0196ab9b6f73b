"""The snapshot: a job's whole state at one moment, and its JSON wire format.

A snapshot is complete, not a delta, so any one of them is enough to draw a progress bar;
``seq`` orders them (strictly increasing per job, from 1), which lets every reader drop
anything older than what it already has.

    >>> snap = Snapshot.queued("j1", "demo.count")
    >>> decode(encode(snap)) == snap
    True
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "AT_WORK",
    "JOB_ID",
    "TERMINAL",
    "JobError",
    "Snapshot",
    "SnapshotHead",
    "Status",
    "decode",
    "decode_head",
    "encode",
    "utcnow",
]

JOB_ID = r"[A-Za-z0-9_-]{1,64}"
"""What a job id is made of: it goes into URL paths and Redis keys as it is."""


class Status(enum.StrEnum):
    QUEUED = "queued"
    """Waiting in the queue (also between retries)."""
    STARTED = "started"
    """A worker picked it up."""
    RUNNING = "running"
    """The job reported progress at least once."""
    PAUSED = "paused"
    """Reserved: cooperative pause."""
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({Status.FINISHED, Status.FAILED, Status.CANCELED})
"""Once a job has one of these, nothing about it changes again."""

AT_WORK = frozenset({Status.STARTED, Status.RUNNING, Status.PAUSED})
"""A worker holds the job: if that worker dies, the job must be recovered."""


class JobError(msgspec.Struct, frozen=True):
    type: str
    """The exception's class name, e.g. ``ValueError``."""
    detail: str
    """The exception's message."""


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    # Field order is the wire order.
    job_id: str
    function: str
    status: Status
    percent: float = 0.0
    message: str = ""
    result: Any = None
    error: JobError | None = None
    attempt: int = 1
    start_at: str | None = None
    """When a deferred job (or its next try) is due to start; ``None`` when it may start at
    once."""
    retry_of: str | None = None
    """The job this one retries (``POST /jobs/{id}/retry``), if any."""
    tags: list[str] = []
    """Labels given when the job was created (``user:42``); set once, never written again.
    A job is listed and streamed under each (``GET /jobs?tag=``, ``GET /events?tag=``)."""
    seq: int = 1
    created_at: str
    updated_at: str
    batch_id: str | None = None
    """The batch the job belongs to (``POST /batches``), if any; set once."""
    weight: int = 1
    """How much the job counts in its batch's ``percent`` (jobhub/core/batch.py)."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def queued(
        cls,
        job_id: str,
        function: str,
        *,
        start_at: str | None = None,
        retry_of: str | None = None,
        tags: list[str] | None = None,
        batch_id: str | None = None,
        weight: int = 1,
    ) -> Snapshot:
        """The first snapshot of a job, written as it is enqueued."""
        now = utcnow()
        return cls(
            job_id=job_id,
            function=function,
            status=Status.QUEUED,
            message="queued" if start_at is None else f"scheduled to start at {start_at}",
            start_at=start_at,
            retry_of=retry_of,
            tags=tags or [],
            created_at=now,
            updated_at=now,
            batch_id=batch_id,
            weight=weight,
        )


class SnapshotHead(msgspec.Struct, frozen=True):
    """The few fields the fan-out needs; decoding only these skips the rest of the JSON."""

    job_id: str
    status: Status
    seq: int

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)
_head_decoder = msgspec.json.Decoder(SnapshotHead)


def encode(snapshot: Snapshot) -> bytes:
    """One line of compact JSON (no newline can occur: strings escape theirs).

    Raises ``TypeError`` if ``result`` holds something JSON cannot carry.
    """
    return _encoder.encode(snapshot)


def decode(data: bytes | str) -> Snapshot:
    return _decoder.decode(data)


def decode_head(data: bytes | str) -> SnapshotHead:
    return _head_decoder.decode(data)


def utcnow() -> str:
    """ISO-8601 UTC with microseconds and ``Z``, e.g. ``2026-11-22T05:08:58.123456Z``."""
    # isoformat is about three times faster than strftime, and this runs on every write.
    return datetime.now(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
