"""What the archive says in aggregate: jobs ended per bucket by status, and run-time
percentiles per function, over a time range.

    stats = await archive_stats(reads, parse_filter(query), bucket="hour")

Percentiles are computed where the data is when the database can: PostgreSQL's
``percentile_cont`` over every matching row. SQLite has no percentile function; there they
are computed in Python from the newest ``SQLITE_SAMPLE`` matching rows (ordered by run
time per function and bucket, so the interpolation is the same as ``percentile_cont``'s),
which keeps a query over a large file bounded in time and memory.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import msgspec
from sqlalchemy import ColumnElement, func, literal_column, select

from jobhub.archive.filters import Filter, conditions
from jobhub.archive.reads import ArchiveReads
from jobhub.core.exceptions import InvalidRequest
from jobhub.core.snapshot import Status

__all__ = [
    "MAX_BUCKETS",
    "PERCENTILES",
    "SQLITE_SAMPLE",
    "ArchiveStats",
    "Bucket",
    "BucketSize",
    "RunTimes",
    "archive_stats",
    "percentile",
]

BucketSize = Literal["minute", "hour", "day"]
MAX_BUCKETS = 2000
SQLITE_SAMPLE = 50_000
MAX_FUNCTIONS = 100
PERCENTILES = (0.5, 0.95, 0.99)
_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_SQLITE_FORMAT = {
    "minute": "%Y-%m-%dT%H:%M:00",
    "hour": "%Y-%m-%dT%H:00:00",
    "day": "%Y-%m-%dT00:00:00",
}
_DEFAULT_SPAN = {"minute": timedelta(hours=2), "hour": timedelta(days=2), "day": timedelta(days=30)}


_ENDED = (Status.FINISHED.value, Status.FAILED.value, Status.CANCELED.value)


class Bucket(msgspec.Struct):
    start: str
    """Its start, ISO 8601 in UTC."""
    counts: dict[str, int]
    """Jobs that ended in it, by status: ``finished``, ``failed`` and ``canceled``, each
    always there."""


class RunTimes(msgspec.Struct):
    function: str
    bucket: str | None
    """The bucket's start; null for the whole range."""
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class ArchiveStats(msgspec.Struct):
    """``GET /archive/stats``."""

    since: str
    until: str
    bucket: BucketSize
    buckets: list[Bucket]
    """Oldest first; a bucket with no job is left out."""
    functions: list[RunTimes]
    """Run-time percentiles of each function over the whole range."""
    over_time: list[RunTimes]
    """The same per function and bucket, oldest first."""
    percentiles: Literal["exact", "sampled"]
    """``sampled``: SQLite's, from the newest ``SQLITE_SAMPLE`` rows."""


def bucket_size(raw: str | None) -> BucketSize:
    if raw is None:
        return "hour"
    if raw not in get_args(BucketSize):
        raise InvalidRequest(f"bucket must be minute, hour or day, got {raw[:20]!r}")
    return raw  # type: ignore[return-value]


async def archive_stats(
    reads: ArchiveReads, found: Filter, *, bucket: BucketSize, now: datetime | None = None
) -> ArchiveStats:
    """Counts per bucket and status, and run-time percentiles, of what ``found`` matches.
    The range defaults to the last few buckets' worth (``until`` now); at most
    ``MAX_BUCKETS`` buckets."""
    until = found.until or (now or datetime.now(UTC))
    since = found.since or until - _DEFAULT_SPAN[bucket]
    if (until - since).total_seconds() / _SECONDS[bucket] > MAX_BUCKETS:
        raise InvalidRequest(
            f"at most {MAX_BUCKETS} buckets: a shorter range or a larger bucket than {bucket}"
        )
    found = msgspec.structs.replace(found, since=since, until=until)
    where = conditions(found, reads.jobs, dialect=reads.dialect)
    start = _bucket_of(reads, bucket)
    c = reads.jobs.c
    counting = select(start, c.status, func.count()).where(*where).group_by(start, c.status)
    async with reads.connect() as connection:
        counted = (await connection.execute(counting.order_by(start))).all()
        if reads.dialect == "postgresql":
            functions = await _exact(connection, reads, where, None)
            over_time = await _exact(connection, reads, where, start)
        else:
            functions, over_time = await _sampled(connection, reads, where, start)
    buckets: dict[str, dict[str, int]] = {}
    for at, status, count in counted:
        # Every final status in every bucket, 0 where none ended so: a chart's series and a
        # script's lookups need no default.
        buckets.setdefault(_iso(at), dict.fromkeys(_ENDED, 0))[status] = count
    return ArchiveStats(
        since=_iso(since),
        until=_iso(until),
        bucket=bucket,
        buckets=[Bucket(at, counts) for at, counts in buckets.items()],
        functions=functions,
        over_time=over_time,
        percentiles="exact" if reads.dialect == "postgresql" else "sampled",
    )


def percentile(ordered: list[float], fraction: float) -> float:
    """``percentile_cont``: linear interpolation between the two nearest ranks."""
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _bucket_of(reads: ArchiveReads, bucket: BucketSize) -> ColumnElement[Any]:
    ended = reads.jobs.c.ended_at
    if reads.dialect == "postgresql":
        return func.date_trunc(bucket, ended).label("start")
    return func.strftime(_SQLITE_FORMAT[bucket], ended).label("start")


async def _exact(
    connection: Any, reads: ArchiveReads, where: list[ColumnElement[bool]], start: Any
) -> list[RunTimes]:
    c = reads.jobs.c
    keys = [c.function] if start is None else [c.function, start]
    parts = [func.percentile_cont(p).within_group(c.run_seconds) for p in PERCENTILES]
    statement = (
        select(*keys, func.count(c.run_seconds), *parts)
        .where(*where, c.run_seconds.is_not(None))
        .group_by(*keys)
        .order_by(*(keys[::-1]))
        .limit(MAX_FUNCTIONS * (1 if start is None else MAX_BUCKETS))
    )
    rows = (await connection.execute(statement)).all()
    if start is None:
        return [RunTimes(row[0], None, row[1], *row[2:]) for row in rows]
    return [RunTimes(row[0], _iso(row[1]), row[2], *row[3:]) for row in rows]


async def _sampled(
    connection: Any, reads: ArchiveReads, where: list[ColumnElement[bool]], start: Any
) -> tuple[list[RunTimes], list[RunTimes]]:
    c = reads.jobs.c
    newest = (
        select(c.function.label("function"), start, c.run_seconds.label("run"))
        .where(*where, c.run_seconds.is_not(None))
        .order_by(c.ended_at.desc())
        .limit(SQLITE_SAMPLE)
        .subquery()
    )
    statement = select(newest).order_by(newest.c.function, literal_column("run"))
    whole: dict[str, list[float]] = defaultdict(list)
    per_bucket: dict[tuple[str, str], list[float]] = defaultdict(list)
    for function, at, run in (await connection.execute(statement)).all():
        whole[function].append(run)
        per_bucket[(at, function)].append(run)
    functions = [_run_times(f, None, runs) for f, runs in sorted(whole.items())]
    over_time = [_run_times(f, _iso(at), runs) for (at, f), runs in sorted(per_bucket.items())]
    return functions[:MAX_FUNCTIONS], over_time


def _run_times(function: str, bucket: str | None, runs: list[float]) -> RunTimes:
    return RunTimes(function, bucket, len(runs), *(percentile(runs, p) for p in PERCENTILES))


def _iso(at: datetime | str) -> str:
    if isinstance(at, str):  # SQLite's strftime
        return at + "Z"
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat().removesuffix("+00:00") + "Z"
