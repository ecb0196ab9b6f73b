"""The archive's tables: every ended job, its snapshot history and (optionally) its output.

One row per job in ``jobs``, keyed by the job id, so that writing a job again (a feed entry
delivered twice) replaces its row rather than adding one. Times are UTC; SQLite keeps them
without a zone, PostgreSQL as ``timestamptz``.

The indexes serve the reads the archive exists for, all newest first by when a job ended:
every job (a keyset page on ``(ended_at, id)``), one function's, one status's. Alembic's
migrations (``migrations/versions``) create exactly these; a test pins the two together.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["IN_CHUNK", "JOBS", "METADATA", "OUTPUT", "PROGRESS"]

IN_CHUNK = 500
"""Job ids per ``IN (...)``: well under SQLite's and asyncpg's limits on parameters."""

METADATA = MetaData()

JOBS = Table(
    "jobs",
    METADATA,
    Column("id", String(255), primary_key=True),
    Column("function", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("batch", String(255), nullable=True),
    Column("args", JSON, nullable=True),
    Column("kwargs", JSON, nullable=True),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("message", Text, nullable=False),
    Column("percent", Float, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("retry_of", String(255), nullable=True),
    Column("worker", String(255), nullable=True),
    Column("seq", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("run_seconds", Float, nullable=True),
    Column("queued_seconds", Float, nullable=True),
    Column("archived_at", DateTime(timezone=True), nullable=False),
    Index("ix_jobs_ended", "ended_at", "id"),
    Index("ix_jobs_function_ended", "function", "ended_at"),
    Index("ix_jobs_status_ended", "status", "ended_at"),
)
"""Every ended job, as its last snapshot said, with its arguments, worker and timings."""

PROGRESS = Table(
    "job_progress_events",
    METADATA,
    Column("job_id", String(255), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("percent", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("snapshot", JSON, nullable=False),
)
"""A job's snapshot history (what ``GET /jobs/{id}/history`` answered), one row per seq; the
whole snapshot is kept too, so the archive can answer that request as Redis did."""

OUTPUT = Table(
    "job_output",
    METADATA,
    Column("job_id", String(255), primary_key=True),
    Column("entry_id", String(64), primary_key=True),
    Column("ordinal", Integer, nullable=False),
    Column("entry", JSON, nullable=False),
)
"""A job's output entries (log lines, partial results), kept with ``JOBHUB_ARCHIVE_OUTPUT``;
``ordinal`` is the entry's place in the job's output (1, 2, ...), which orders them."""
