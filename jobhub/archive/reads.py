"""Reads of the archive: one job past Redis's TTL, and pages of jobs a filter matches,
newest first.

    reads = ArchiveReads(engine)
    job = await reads.job("j1")                     # None where the archive has none
    page = await reads.page(parse_filter(query), cursor=None, limit=50)
    more = await reads.page(parse_filter(query), cursor=page.next_cursor, limit=50)

A page is keyset-paged on ``(ended_at, id)``, newest first: the cursor is the last row's
pair, so a page costs one index range however deep the reader is, and rows archived while
someone pages (they end later, so they sort before the cursor) neither shift nor repeat
what follows. The cursor is opaque to clients (base64 of JSON); a forged one is a 400.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Row, Table, func, literal, select, tuple_
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobhub.archive.filters import Filter, conditions, parse_time
from jobhub.archive.schema import IN_CHUNK, JOBS, PROGRESS
from jobhub.core.exceptions import InvalidRequest
from jobhub.core.snapshot import JOB_ID, Status

__all__ = ["MAX_LIMIT", "ArchivePage", "ArchiveReads", "decode_cursor", "encode_cursor"]

MAX_LIMIT = 200
"""The most rows a page of ``GET /archive/jobs`` holds."""

MAX_EVENTS = 10_000
"""The most history rows one job's archived history answers (Redis keeps fewer)."""


class ArchivePage(msgspec.Struct, frozen=True):
    rows: list[Row[Any]]
    next_cursor: str | None


class _Cursor(msgspec.Struct, array_like=True, frozen=True):
    ended_at: str
    id: str


class ArchiveReads:
    """The queries the web app asks of the archive, on an engine the app owns."""

    def __init__(self, engine: AsyncEngine, table: Table = JOBS) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.jobs = table

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for the web app's reads. A database that cannot be reached (refused,
        reset, timed out) raises ``OSError``, which SQLAlchemy lets through as it is: here it
        becomes a SQLAlchemy error like any other the database raises, so that the web app
        answers it as one (503), not as a fault of its own (500)."""
        try:
            async with self.engine.connect() as connection:
                yield connection
        except OSError as exc:
            raise DisconnectionError(f"the archive's database cannot be reached: {exc}") from exc

    async def job(self, job_id: str) -> Row[Any] | None:
        async with self.connect() as connection:
            found = await connection.execute(select(self.jobs).where(self.jobs.c.id == job_id))
            return found.first()

    async def events(self, job_id: str) -> list[Row[Any]]:
        """The job's archived history, in ``seq`` order."""
        events = PROGRESS
        statement = (
            select(events).where(events.c.job_id == job_id).order_by(events.c.seq).limit(MAX_EVENTS)
        )
        async with self.connect() as connection:
            return list((await connection.execute(statement)).all())

    async def page(self, found: Filter, *, cursor: str | None, limit: int) -> ArchivePage:
        """A page of the jobs ``found`` matches, newest first (``ended_at``, then ``id``)."""
        c = self.jobs.c
        where = conditions(found, self.jobs, dialect=self.dialect)
        if cursor is not None:
            at, last_id = decode_cursor(cursor, self.dialect)
            # A row-value comparison, which PostgreSQL reads as one range of the
            # (ended_at, id) index (an OR of the two cases it would scan more of).
            where.append(
                tuple_(c.ended_at, c.id) < tuple_(literal(at, c.ended_at.type), literal(last_id))
            )
        statement = (
            select(self.jobs)
            .where(*where)
            .order_by(c.ended_at.desc(), c.id.desc())
            .limit(limit + 1)  # one more: whether there is a next page, without a count
        )
        async with self.connect() as connection:
            rows = list((await connection.execute(statement)).all())
        after = None
        if len(rows) > limit:
            rows = rows[:limit]
            after = encode_cursor(rows[-1].ended_at, rows[-1].id)
        return ArchivePage(rows, after)

    async def count(self, found: Filter) -> int:
        statement = select(func.count()).select_from(self.jobs)
        statement = statement.where(*conditions(found, self.jobs, dialect=self.dialect))
        async with self.connect() as connection:
            return int((await connection.execute(statement)).scalar_one())

    async def failed(self, found: Filter, *, limit: int) -> list[Row[Any, Any, Any, Any, Any]]:
        """The newest ``limit`` failed jobs ``found`` matches (for a bulk retry)."""
        failed = msgspec.structs.replace(found, status=Status.FAILED)
        c = self.jobs.c
        statement = (
            select(c.id, c.function, c.args, c.kwargs, c.tags)
            .where(*conditions(failed, self.jobs, dialect=self.dialect))
            .order_by(c.ended_at.desc(), c.id.desc())
            .limit(limit)
        )
        async with self.connect() as connection:
            return list((await connection.execute(statement)).all())

    async def retries_of(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        """Of ``job_ids``, those the archive holds, each with its ``retry_of``."""
        found: dict[str, str | None] = {}
        c = self.jobs.c
        async with self.connect() as connection:
            for start in range(0, len(job_ids), IN_CHUNK):
                chunk = job_ids[start : start + IN_CHUNK]
                rows = await connection.execute(select(c.id, c.retry_of).where(c.id.in_(chunk)))
                found.update({job_id: retry_of for job_id, retry_of in rows})
        return found


def encode_cursor(ended_at: datetime, job_id: str) -> str:
    """The opaque cursor after the row ``(ended_at, job_id)``."""
    pair = _Cursor(ended_at.replace(tzinfo=None).isoformat(timespec="microseconds"), job_id)
    return base64.urlsafe_b64encode(msgspec.json.encode(pair)).rstrip(b"=").decode()


_decode_pair = msgspec.json.Decoder(_Cursor).decode


def decode_cursor(cursor: str, dialect: str) -> tuple[datetime, str]:
    """The row a cursor points after; ``InvalidRequest`` for one this module did not make."""
    try:
        if len(cursor) > 200 or not cursor.isascii():
            raise ValueError
        pair = _decode_pair(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not re.fullmatch(JOB_ID, pair.id):
            raise ValueError
        at = parse_time(pair.ended_at, "cursor")
    except (ValueError, binascii.Error, msgspec.DecodeError, InvalidRequest):
        raise InvalidRequest("cursor is not one a page of /archive/jobs gave") from None
    return (at.replace(tzinfo=None) if dialect == "sqlite" else at), pair.id
