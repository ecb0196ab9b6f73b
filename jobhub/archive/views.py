"""An archived job drawn as the live API draws a job: its snapshot, its history and its
detail, each marked ``"archived": true``, so that a reader past Redis's TTL gets the same
shapes it got before.

    snapshot = snapshot_of(row)                 # as GET /jobs/{id} answered at the end
    history = [event.snapshot for event in events]
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from jobhub.core.snapshot import JobError, Snapshot, Status

__all__ = ["archived", "detail_of", "iso", "snapshot_of", "summary_of"]


def iso(at: datetime | None) -> str | None:
    """A stored time as a snapshot writes one (``2026-11-22T05:08:58.123456Z``): the job
    token's instance is made of ``created_at``'s characters, so they must come back alike.
    SQLite gives times back without a zone; the archive wrote them in UTC."""
    if at is None:
        return None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def archived(data: bytes) -> bytes:
    """A JSON object with ``"archived": true`` put first."""
    return b'{"archived":true,' + data[1:]


def snapshot_of(row: Any) -> Snapshot:
    """The job's final snapshot, as the archive keeps it (a ``JOBS`` row)."""
    return Snapshot(
        job_id=row.id,
        function=row.function,
        status=Status(row.status),
        percent=float(row.percent),
        message=row.message,
        result=row.result,
        error=None if row.error is None else msgspec.convert(row.error, JobError),
        attempt=row.attempt,
        retry_of=row.retry_of,
        tags=list(row.tags or []),
        seq=row.seq,
        created_at=iso(row.created_at) or "",
        updated_at=iso(row.ended_at) or "",
    )


def detail_of(row: Any) -> dict[str, Any]:
    """``GET /jobs/{id}/detail`` of an archived job (the caller adds ``actions`` and
    ``lifecycle``)."""
    snapshot = snapshot_of(row)
    return {
        "snapshot": snapshot,
        "arguments": {"args": row.args or [], "kwargs": row.kwargs or {}},
        "worker": row.worker,
        "timings": {
            "created_at": snapshot.created_at,
            "started_at": iso(row.started_at),
            "ended_at": snapshot.updated_at,
            "queued_seconds": row.queued_seconds,
            "run_seconds": row.run_seconds,
        },
    }


def summary_of(row: Any) -> dict[str, Any]:
    """One row of ``GET /archive/jobs``."""
    return {
        "job_id": row.id,
        "function": row.function,
        "status": row.status,
        "tags": list(row.tags or []),
        "batch": row.batch,
        "args": row.args or [],
        "kwargs": row.kwargs or {},
        "result": row.result,
        "error": row.error,
        "message": row.message,
        "attempt": row.attempt,
        "retry_of": row.retry_of,
        "worker": row.worker,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at),
        "queued_seconds": row.queued_seconds,
        "run_seconds": row.run_seconds,
    }
