"""From what Redis held of an ended job to the archive's rows: one ``jobs`` row, one
``job_progress_events`` row per snapshot of its history, and its ``job_output`` rows.

A field a newer jobhub adds to the snapshot (``batch``) is read where it is present, so the
archiver need not be upgraded in step with the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from jobhub.core.snapshot import TERMINAL
from jobhub.store.feed import FedJob

__all__ = ["JobRows", "job_rows", "parse_time"]


@dataclass(slots=True)
class JobRows:
    """The rows of one job, ready for SQLAlchemy's ``insert``."""

    job: dict[str, Any]
    progress: list[dict[str, Any]] = field(default_factory=list)
    output: list[dict[str, Any]] = field(default_factory=list)


def parse_time(value: str) -> datetime:
    """jobhub's ISO-8601 UTC (``2026-11-22T05:08:58.123456Z``) as an aware datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


_NUL = b"\\u0000"
"""NUL as JSON writes it in a string (msgspec escapes it so)."""


def _decode(raw: bytes) -> Any:
    """JSON from Redis, each NUL in its strings (and keys) made U+FFFD. PostgreSQL's text
    cannot hold NUL, nor its jsonb, to which the archive's filters cast args and kwargs: one
    archived job with a NUL there made every ``arg.`` filter fail on PostgreSQL."""
    value = msgspec.json.decode(raw)
    return _without_nul(value) if _NUL in raw else value


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _text(value: Any) -> str:
    return str(value or "")


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 6)


def job_rows(job: FedJob, *, archived_at: datetime) -> JobRows | None:
    """The rows for ``job``, or None when Redis no longer held the job that was fed: its
    snapshot is gone, or is of a job that has not ended, started under the same id since
    (after a DELETE, or the TTL) and fed in its turn when it ends."""
    if job.data is None:
        return None
    snapshot = _decode(job.data)
    if snapshot["status"] not in TERMINAL:
        return None
    arguments = _decode(job.arguments) if job.arguments else {}
    created = parse_time(snapshot["created_at"])
    ended = parse_time(snapshot["updated_at"])  # the terminal snapshot's time: when it ended
    started = parse_time(job.started_at) if job.started_at else None
    rows = JobRows(
        job={
            "id": job.job_id,
            "function": snapshot["function"],
            "status": snapshot["status"],
            "tags": snapshot.get("tags") or [],
            "batch": snapshot.get("batch"),
            "args": arguments.get("args"),
            "kwargs": arguments.get("kwargs"),
            "result": snapshot.get("result"),
            "error": snapshot.get("error"),
            "message": _text(snapshot.get("message")),
            "percent": float(snapshot.get("percent") or 0.0),
            "attempt": int(snapshot.get("attempt") or 1),
            "retry_of": snapshot.get("retry_of"),
            "worker": job.worker,
            "seq": int(snapshot["seq"]),
            "created_at": created,
            "started_at": started,
            "ended_at": ended,
            "run_seconds": _seconds(started, ended),
            "queued_seconds": _seconds(created, started),
            "archived_at": archived_at,
        }
    )
    for raw in job.history:
        past = _decode(raw)
        rows.progress.append(
            {
                "job_id": job.job_id,
                "seq": int(past["seq"]),
                "status": past["status"],
                "percent": float(past.get("percent") or 0.0),
                "message": _text(past.get("message")),
                "at": parse_time(past["updated_at"]),
                "snapshot": past,
            }
        )
    for ordinal, (entry_id, entry) in enumerate(job.output, 1):
        # The entry id's second part is its place in the job's whole output (see
        # store/lua/snapshots.py), which survives the cap that dropped older entries.
        place = entry_id.partition("-")[2]
        rows.output.append(
            {
                "job_id": job.job_id,
                "entry_id": entry_id,
                "ordinal": int(place) if place.isdigit() else ordinal,
                "entry": _decode(entry),
            }
        )
    return rows
