"""Archived jobs written straight into the archive's tables, for the tests of its reads:
the rows the archiver would write, with times and run times chosen so that each filter,
page and percentile has one right answer.

    engine = await migrated("sqlite+aiosqlite:///" + str(tmp_path / "a.db"))
    await insert(engine, [job_row("j1", function="reports.build", status="failed")])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert as sql_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from jobhub.archive.database import migrate, open_engine
from jobhub.archive.schema import JOBS, PROGRESS

BASE = datetime(2026, 11, 1, tzinfo=UTC)
"""The first job's end; the test data's jobs end a minute apart after it."""


async def migrated(url: str) -> AsyncEngine:
    engine = open_engine(url)
    await migrate(engine)
    return engine


def job_row(
    job_id: str,
    *,
    function: str = "reports.build",
    status: str = "finished",
    ended_at: datetime = BASE,
    run_seconds: float | None = 1.0,
    tags: Sequence[str] = (),
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    result: Any = None,
) -> dict[str, Any]:
    started = ended_at - timedelta(seconds=run_seconds or 0)
    created = started - timedelta(seconds=0.25)
    return {
        "id": job_id,
        "function": function,
        "status": status,
        "tags": list(tags),
        "batch": None,
        "args": list(args),
        "kwargs": kwargs or {},
        "result": result,
        "error": error,
        "message": status,
        "percent": 100.0 if status == "finished" else 40.0,
        "attempt": 1,
        "retry_of": None,
        "worker": "worker-1",
        "seq": 3,
        "created_at": created,
        "started_at": started,
        "ended_at": ended_at,
        "run_seconds": run_seconds,
        "queued_seconds": 0.25,
        "archived_at": ended_at,
    }


def history_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The three snapshots a job's history held: queued, running, its end."""
    steps = [("queued", 0.0, row["created_at"]), ("running", 40.0, row["started_at"])]
    steps.append((row["status"], row["percent"], row["ended_at"]))
    found = []
    for seq, (status, percent, at) in enumerate(steps, start=1):
        snapshot = {
            "job_id": row["id"],
            "function": row["function"],
            "status": status,
            "percent": percent,
            "message": status,
            "seq": seq,
            "tags": row["tags"],
            "created_at": _iso(row["created_at"]),
            "updated_at": _iso(at),
        }
        found.append(
            {
                "job_id": row["id"],
                "seq": seq,
                "status": status,
                "percent": percent,
                "message": status,
                "at": at,
                "snapshot": snapshot,
            }
        )
    return found


async def insert(engine: AsyncEngine, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` (``job_row``'s) and their histories in one transaction."""
    if not rows:
        return
    async with engine.begin() as connection:
        await connection.execute(sql_insert(JOBS), list(rows))
        events = [event for row in rows for event in history_rows(row)]
        await connection.execute(sql_insert(PROGRESS), events)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
