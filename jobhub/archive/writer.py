"""Writing a batch of jobs into the archive: one transaction, upserts by job id.

A batch may hold a job the archive has already (a feed entry delivered again after an
archiver died between its commit and its acknowledgement): its row is replaced, never added
twice, and its history and output rows are written anew. On PostgreSQL the commit is
durable when it returns, whatever the server's ``synchronous_commit``.

    async with engine.begin() as connection:
        await write_batch(connection, rows)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from jobhub.archive.records import JobRows
from jobhub.archive.schema import IN_CHUNK, JOBS, OUTPUT, PROGRESS

__all__ = ["write_batch"]

_DURABLE = text(
    "SELECT set_config('synchronous_commit', 'on', true)"
    " WHERE current_setting('synchronous_commit') = 'off'"
)


def _insert(connection: AsyncConnection, table: Table) -> Any:
    # Both dialects spell an upsert ON CONFLICT, each with its own construct.
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def write_batch(connection: AsyncConnection, batch: Sequence[JobRows]) -> None:
    """Upsert every job of ``batch`` with its history and output, within the caller's
    transaction (so the batch is written whole or not at all)."""
    if not batch:
        return
    if connection.dialect.name == "postgresql":
        # The archiver acknowledges and deletes the batch's feed entries once the commit
        # returns, so it must be on disk by then. synchronous_commit off (a common tuning)
        # returns first and a crash loses the last commits: off becomes on for this
        # transaction; a stricter setting (remote_apply) is left as it is.
        await connection.execute(_DURABLE)
    # The last of a job's rows wins, as its last feed entry would.
    jobs = list({rows.job["id"]: rows for rows in batch}.values())
    ids = [rows.job["id"] for rows in jobs]
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        await connection.execute(delete(PROGRESS).where(PROGRESS.c.job_id.in_(chunk)))
        await connection.execute(delete(OUTPUT).where(OUTPUT.c.job_id.in_(chunk)))
    upsert = _insert(connection, JOBS)
    upsert = upsert.on_conflict_do_update(
        index_elements=[JOBS.c.id],
        set_={c.name: upsert.excluded[c.name] for c in JOBS.columns if c.name != "id"},
    )
    await connection.execute(upsert, [rows.job for rows in jobs])
    progress = [row for rows in jobs for row in rows.progress]
    if progress:
        await connection.execute(PROGRESS.insert(), progress)
    output = [row for rows in jobs for row in rows.output]
    if output:
        await connection.execute(OUTPUT.insert(), output)
