"""The archive over HTTP: every ended job, kept in SQL past Redis's TTL.

GET  /archive/jobs?function=&status=&tag=&since=&until=&error=&arg.<path>=&cursor=&limit=
                        newest first, keyset-paged (``next_cursor``)
GET  /archive/stats?function=&tag=&since=&until=&bucket=minute|hour|day
                        jobs per bucket by status, run-time p50/p95/p99 per function
POST /archive/retry     {"filter": {...}} answers the count of failed jobs it matches;
                        {"filter": {...}, "count": n} retries them (at most MAX_RETRY)

Each needs an API key (or a signed-in console): the archive spans every tag, so a scoped
token is refused (403) rather than answered with a part that looks like the whole. With no
archive configured (``JOBHUB_ARCHIVE_URL``) they answer 404 ``ArchiveOff``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub.archive.filters import parse_filter
from jobhub.archive.reads import MAX_LIMIT, ArchiveReads
from jobhub.archive.stats import ArchiveStats, archive_stats, bucket_size
from jobhub.archive.views import summary_of
from jobhub.core.exceptions import InvalidRequest, JobhubError
from jobhub.core.parsing import ascii_int
from jobhub.core.snapshot import Status
from jobhub.lifecycle.lifecycle import retry_id
from jobhub.lifecycle.table import Party
from jobhub.lifecycle.transitions import move
from jobhub.server.routes import Error
from jobhub.server.services import decode_body, json_response, query_of, read_json, services_of

__all__ = [
    "MAX_RETRY",
    "ArchiveOff",
    "ArchivedJobs",
    "BulkRetry",
    "BulkRetryCount",
    "BulkRetryDone",
    "RetryConflict",
    "archive_of",
    "openapi_paths",
    "routes",
]

MAX_RETRY = 1000
"""The most jobs one bulk retry starts: a filter that matches more retries the newest."""


class ArchiveOff(JobhubError):
    status_code = 404


class RetryConflict(JobhubError):
    """The count a bulk retry was confirmed with is not the filter's count now."""

    status_code = 409


class ArchivedJobs(msgspec.Struct):
    """``GET /archive/jobs``: newest first."""

    jobs: list[dict[str, Any]]
    next_cursor: str | None


class BulkRetry(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /archive/retry``: without ``count`` it only counts."""

    filter: dict[str, Annotated[str, msgspec.Meta(max_length=200)]] = {}
    count: Annotated[int, msgspec.Meta(ge=0, le=MAX_RETRY)] | None = None
    """The count the dry run answered: the retry goes ahead only if it still is."""


class BulkRetryCount(msgspec.Struct):
    count: int
    """Failed jobs the retry would start (at most ``limit``)."""
    matched: int
    """Failed jobs the filter matches."""
    limit: int


class Retried(msgspec.Struct):
    job_id: str
    retry_of: str
    created: bool
    """False where the job had been retried before: its retry is answered, not started again."""


class Skipped(msgspec.Struct):
    job_id: str
    reason: str


class BulkRetryDone(msgspec.Struct):
    retried: list[Retried]
    skipped: list[Skipped]


def archive_of(request: Request) -> ArchiveReads:
    archive = services_of(request).archive
    if archive is None:
        raise ArchiveOff("no archive here: set JOBHUB_ARCHIVE_URL to keep ended jobs")
    return archive


async def archive_jobs(request: Request) -> Response:
    services = services_of(request)
    services.gate.key(request)
    archive = archive_of(request)
    query = query_of(request)
    found = parse_filter(query, also=("cursor", "limit"))
    raw = query.get("limit", "50")
    limit = ascii_int(raw)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw[:20]!r}")
    page = await archive.page(found, cursor=query.get("cursor"), limit=limit)
    body = ArchivedJobs([summary_of(row) for row in page.rows], page.next_cursor)
    return json_response(msgspec.json.encode(body))


async def archive_stats_route(request: Request) -> Response:
    services = services_of(request)
    services.gate.key(request)
    archive = archive_of(request)
    query = query_of(request)
    found = parse_filter(query, also=("bucket",))
    stats: ArchiveStats = await archive_stats(
        archive, found, bucket=bucket_size(query.get("bucket"))
    )
    return json_response(msgspec.json.encode(stats), headers={"Cache-Control": "no-store"})


async def bulk_retry(request: Request) -> Response:
    """Count first, then retry what was counted: a filter that has come to match another
    number of jobs between the two is a 409 with the new count, asked again."""
    services = services_of(request)
    services.gate.key(request)
    archive = archive_of(request)
    asked = decode_body(await read_json(request, services.settings.max_body_bytes), BulkRetry)
    found = parse_filter(asked.filter)
    if found.status not in (None, Status.FAILED):
        raise InvalidRequest("a bulk retry retries failed jobs: leave status out, or failed")
    found = msgspec.structs.replace(found, status=Status.FAILED)
    matched = await archive.count(found)
    count = min(matched, MAX_RETRY)
    if asked.count is None:
        return json_response(msgspec.json.encode(BulkRetryCount(count, matched, MAX_RETRY)))
    if asked.count != count:
        raise RetryConflict(
            f"the filter matches {count} failed jobs now, not {asked.count}: count again"
        )
    # The lifecycle table says which ended jobs may be retried, here as for one job.
    if Status.FAILED not in move("retry", Party.OPERATOR).sources:
        raise InvalidRequest("the lifecycle table does not retry failed jobs")
    retried: list[Retried] = []
    skipped: list[Skipped] = []
    offered: dict[str, bool] = {}
    rows = await archive.failed(found, limit=count)
    # A retry that ended and that Redis has forgotten since (JOBHUB_RESULT_TTL) is in the
    # archive only: create would start it again, under the same id, and its end would
    # replace the archived retry. It is answered as a retry Redis still holds is.
    archived = await archive.retries_of([retry_id(row.id) for row in rows])
    for row in rows:
        new_id = retry_id(row.id)
        if new_id in archived:
            if archived[new_id] == row.id:
                retried.append(Retried(new_id, row.id, False))
            else:
                taken = f"the id of {row.id!r}'s retry, {new_id!r}, names another job"
                skipped.append(Skipped(row.id, taken))
            continue
        if row.function not in offered:
            offered[row.function] = await services.registry.is_offered(row.function)
        if not offered[row.function]:
            skipped.append(Skipped(row.id, f"no live worker runs {row.function}"))
            continue
        try:
            new_id, created, _ = await services.lifecycle.create(
                row.function,
                row.args or [],
                row.kwargs or {},
                job_id=new_id,
                retry_of=row.id,
                tags=list(row.tags or []),
            )
        except JobhubError as exc:
            skipped.append(Skipped(row.id, exc.detail))
            continue
        if created:
            services.metrics.enqueued.labels(row.function).inc()
        retried.append(Retried(new_id, row.id, created))
    return json_response(msgspec.json.encode(BulkRetryDone(retried, skipped)), 202)


def openapi_paths() -> dict[str, Any]:
    """The archive's part of the OpenAPI document (``jobhub.server.openapi``): its models
    where the schemas go, as there."""

    def answer(model: Any, description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": model}}}

    def query(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": str, "description": description}

    refused = {
        "400": answer(Error, "a filter, cursor or limit out of shape"),
        "401": answer(Error, "no API key (or console session)"),
        "403": answer(Error, "a scoped token: the archive spans every tag"),
        "404": answer(Error, "no archive here (JOBHUB_ARCHIVE_URL): ArchiveOff"),
    }
    filters = [
        query("function", "only this function's jobs"),
        query("status", "finished, failed or canceled"),
        query("tag", "only jobs with this tag"),
        query("since", "ended at or after: ISO 8601, or a span back from now (7d, 90m)"),
        query("until", "ended before (as since)"),
        query("error", "a substring of the error, any case"),
    ]
    return {
        "/archive/jobs": {
            "get": {
                "summary": "Ended jobs from the archive, newest first (arg.<path>=<value> too)",
                "parameters": [
                    *filters,
                    query("cursor", "next_cursor of the page before"),
                    {"name": "limit", "in": "query", "schema": int, "description": "1 to 200"},
                ],
                "responses": {"200": answer(ArchivedJobs, "a page"), **refused},
            }
        },
        "/archive/stats": {
            "get": {
                "summary": "Jobs per bucket by status; run-time p50/p95/p99 per function",
                "parameters": [*filters, query("bucket", "minute, hour or day (hour)")],
                "responses": {"200": answer(ArchiveStats, "the figures"), **refused},
            }
        },
        "/archive/retry": {
            "post": {
                "summary": "Count the failed jobs a filter matches; with that count, retry them",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": BulkRetry}},
                },
                "responses": {
                    "200": answer(BulkRetryCount, "the count (no count sent)"),
                    "202": answer(BulkRetryDone, "the retries started, and those skipped"),
                    "409": answer(Error, "the filter matches another count now"),
                    **refused,
                },
            }
        },
    }


routes = [
    Route("/archive/jobs", archive_jobs, methods=["GET"]),
    Route("/archive/stats", archive_stats_route, methods=["GET"]),
    Route("/archive/retry", bulk_retry, methods=["POST"]),
]
