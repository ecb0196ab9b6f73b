"""A job's reads once Redis has forgotten it: ``GET /jobs/{id}``, ``/history`` and
``/detail`` answer from the archive, marked ``"archived": true``.

The routes call these where Redis answered nothing; the gate reads snapshots through
``reading_archive`` too, so a job's token (and a scoped token's tags) open the archived
job exactly as they opened the live one: the instance a token names is the job's
``created_at``, which the archive keeps to the microsecond.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from jobhub.archive.reads import ArchiveReads
from jobhub.archive.views import archived, detail_of, snapshot_of
from jobhub.core.exceptions import JobNotFound
from jobhub.lifecycle.table import ACTIONS_BY_STATUS
from jobhub.server.services import json_response, services_of

__all__ = ["archived_detail", "archived_history", "archived_job", "reading_archive"]

ReadSnapshots = Callable[[Sequence[str]], Awaitable[Sequence[bytes | None]]]


def reading_archive(read: ReadSnapshots, archive: ArchiveReads | None) -> ReadSnapshots:
    """``read`` (Redis), then the archive for the jobs Redis no longer has."""
    if archive is None:
        return read

    async def read_both(job_ids: Sequence[str]) -> Sequence[bytes | None]:
        found = list(await read(job_ids))
        missing = [job_id for job_id, data in zip(job_ids, found, strict=True) if data is None]
        if not missing:
            return found
        jobs = archive.jobs
        async with archive.connect() as connection:
            statement = select(jobs).where(jobs.c.id.in_(missing))
            rows = {row.id: row for row in (await connection.execute(statement)).all()}
        for i, job_id in enumerate(job_ids):
            if found[i] is None and job_id in rows:
                found[i] = msgspec.json.encode(snapshot_of(rows[job_id]))
        return found

    return read_both


async def archived_job(request: Request, job_id: str) -> Response:
    """``GET /jobs/{id}`` of a job only the archive has; ``JobNotFound`` where it has none."""
    _, row = await _row(request, job_id)
    snapshot = snapshot_of(row)
    headers = {"ETag": f'"{snapshot.seq}"', "Cache-Control": "no-cache"}
    return json_response(archived(msgspec.json.encode(snapshot)), 200, headers)


async def archived_history(request: Request, job_id: str) -> Response:
    archive, _ = await _row(request, job_id)
    # Each snapshot as the job's history held it when it ended, as Redis answered it then.
    history = [
        archived(msgspec.json.encode(event.snapshot)) for event in await archive.events(job_id)
    ]
    return json_response(b"[" + b",".join(history) + b"]")


async def archived_detail(request: Request, job_id: str) -> Response:
    _, row = await _row(request, job_id)
    detail = detail_of(row)
    # Nothing can be done to an archived job but a retry, and that is POST /archive/retry.
    detail["actions"] = []
    detail["lifecycle"] = ACTIONS_BY_STATUS
    return json_response(archived(msgspec.json.encode(detail)))


async def _row(request: Request, job_id: str) -> tuple[ArchiveReads, Any]:
    archive = services_of(request).archive
    row = None if archive is None else await archive.job(job_id)
    if archive is None or row is None:
        raise JobNotFound(job_id)
    return archive, row
