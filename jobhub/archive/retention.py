"""Retention: archived jobs older than their status's keep days are deleted, in small
transactions (``ROWS`` jobs each), so that no delete holds the tables' locks for long and
readers and the archiver's batches go on in between.

    retention = Retention.from_settings(settings)
    deleted = await retention.prune(engine)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobhub.archive.schema import JOBS, OUTPUT, PROGRESS
from jobhub.core.settings import Settings
from jobhub.core.snapshot import TERMINAL, Status

__all__ = ["ROWS", "Retention"]

ROWS = 500
"""Jobs deleted per transaction (with their history and output rows)."""


@dataclass(frozen=True, slots=True)
class Retention:
    """Days each final status is kept; a status missing is kept forever."""

    keep_days: dict[Status, float]

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        own = {
            Status.FINISHED: settings.archive_keep_days_finished,
            Status.FAILED: settings.archive_keep_days_failed,
            Status.CANCELED: settings.archive_keep_days_canceled,
        }
        keep = {s: own[s] if own[s] is not None else settings.archive_keep_days for s in TERMINAL}
        return cls({status: days for status, days in keep.items() if days is not None})

    async def prune(self, engine: AsyncEngine, *, now: datetime | None = None) -> int:
        """Delete what is past its keep days; returns how many jobs were deleted."""
        now = now or datetime.now(UTC)
        deleted = 0
        for status, days in sorted(self.keep_days.items()):
            cutoff = now - timedelta(days=days)
            while True:
                async with engine.begin() as connection:
                    # The (status, ended_at) index finds them oldest first.
                    found = select(JOBS.c.id).where(
                        JOBS.c.status == status.value, JOBS.c.ended_at < cutoff
                    )
                    ids = list(
                        (await connection.execute(found.order_by(JOBS.c.ended_at).limit(ROWS)))
                        .scalars()
                        .all()
                    )
                    if ids:
                        await connection.execute(delete(PROGRESS).where(PROGRESS.c.job_id.in_(ids)))
                        await connection.execute(delete(OUTPUT).where(OUTPUT.c.job_id.in_(ids)))
                        await connection.execute(delete(JOBS).where(JOBS.c.id.in_(ids)))
                deleted += len(ids)
                if len(ids) < ROWS:
                    break
        return deleted
