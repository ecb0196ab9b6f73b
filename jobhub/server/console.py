"""What an operator does to jobs beyond starting and watching them: retry, delete, look
closer, and see the whole system at a glance.

POST   /jobs/{id}/retry    an ended job again, as a new job (its snapshot's retry_of)
DELETE /jobs/{id}          an ended job and everything kept of it
GET    /jobs/{id}/detail   arguments, timings, worker, beside the snapshot
GET    /jobs/{id}/output   a page of the job's log lines and output chunks
GET    /stats              counts by status, queue depth, live workers, jobs ended per minute

Every figure of ``/stats`` is read from counters the write scripts keep, never by scanning
jobs: its cost does not grow with the number of jobs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub.core.exceptions import (
    InvalidRequest,
    JobIsFinal,
    JobNotFound,
    UnknownFunction,
    WrongStatus,
)
from jobhub.core.parsing import ascii_int
from jobhub.core.positions import Gap, is_entry_id
from jobhub.core.snapshot import Snapshot
from jobhub.server.archived import archived_detail
from jobhub.server.routes import conflict, encoded, with_token
from jobhub.server.services import job_id_of, json_response, query_of, services_of

__all__ = [
    "MAX_OUTPUT_PAGE",
    "STATS_MINUTES",
    "Detail",
    "OutputEntry",
    "OutputKind",
    "OutputPage",
    "Stats",
    "routes",
]

MAX_OUTPUT_PAGE = 1000
STATS_MINUTES = 60


class Timings(msgspec.Struct):
    created_at: str
    started_at: str | None
    """When its newest run started."""
    ended_at: str | None
    queued_seconds: float | None
    run_seconds: float | None


class Detail(msgspec.Struct):
    """``GET /jobs/{id}/detail``."""

    snapshot: Snapshot
    actions: list[str]
    """What an operator may ask of the job in its status: of ``cancel``, ``pause``,
    ``resume``, ``retry``, ``delete`` (the lifecycle table decides)."""
    lifecycle: dict[str, list[str]]
    """``actions`` of every status, so that a console follows the job's status changes
    without a copy of the table."""
    arguments: dict[str, Any] | None
    """``{"args": [...], "kwargs": {...}}``, or ``{"truncated": true, "bytes": n}`` for
    arguments over 64 KiB; null for a job enqueued with ARQ directly."""
    worker: str | None
    """The worker of its newest run."""
    timings: Timings


OutputKind = Literal["log", "output"]
"""What an output entry is: a log line, or a chunk the job wrote."""


class OutputEntry(msgspec.Struct, omit_defaults=True):
    """One entry of a job's output: a log line (``level``, ``message``) or a chunk
    (``data``)."""

    id: str
    kind: OutputKind
    at: str
    level: str | None = None
    message: str | None = None
    data: Any = None


EntryJSON = Annotated[msgspec.Raw, encoded(OutputEntry)]


class OutputPage(msgspec.Struct):
    entries: list[EntryJSON]
    """Each as the job wrote it to its output, with its ``id`` put first."""
    gap: Gap | None
    """Entries after ``after`` that the job's capped output dropped before this read: how
    many, exactly, and the ordinals of the first and last (``from``, ``to``); null when
    none were."""
    next: str
    """Pass it as ``after`` for the next page."""


class Worker(msgspec.Struct):
    id: str
    functions: list[str]
    jobs: int
    last_beat: str | None


class Minute(msgspec.Struct):
    minute: int
    """Its start, in Unix seconds."""
    finished: int
    failed: int
    canceled: int


class Stats(msgspec.Struct):
    counts: dict[str, int]
    """Jobs in each status that is not final, now."""
    queue_depth: int
    workers: list[Worker]
    ended_per_minute: list[Minute]
    """The last hour, oldest first."""


_KINDS = frozenset(get_args(OutputKind))


async def retry_job(request: Request) -> Response:
    services = services_of(request)
    services.gate.key(request)  # a retry starts a new job, as POST /jobs does
    job_id = job_id_of(request)
    snapshot = await services.store.read(job_id)
    if snapshot is None:
        raise JobNotFound(job_id)
    if not await services.registry.is_offered(snapshot.function):
        raise UnknownFunction(snapshot.function, await services.registry.live_functions())
    try:
        new_id, created, data = await services.lifecycle.retry(job_id)
    except WrongStatus as exc:
        return await conflict(services.store, exc)
    if created:
        services.metrics.enqueued.labels(snapshot.function).inc()
    response = json_response(data, 202 if created else 200, {"Location": f"/jobs/{new_id}"})
    return with_token(request, response, new_id)


async def delete_job(request: Request) -> Response:
    services = services_of(request)
    job_id = job_id_of(request)
    await services.gate.job(request, job_id)
    try:
        await services.lifecycle.delete(job_id)
    except (WrongStatus, JobIsFinal) as exc:
        return await conflict(services.store, exc)
    return Response(status_code=204)


async def job_detail(request: Request) -> Response:
    services = services_of(request)
    job_id = job_id_of(request)
    await services.gate.job(request, job_id)
    try:
        found = await services.lifecycle.detail(job_id)
    except JobNotFound:
        return await archived_detail(request, job_id)
    detail = msgspec.convert(found, Detail)
    return json_response(msgspec.json.encode(detail))


async def job_output(request: Request) -> Response:
    """``GET /jobs/{id}/output?after=<entry id>&limit=&kind=log|output``: entries oldest
    first, ``gap`` (entries after ``after`` trimmed before they were read, or null) and
    ``next``, the cursor to pass as ``after`` for the following page."""
    services = services_of(request)
    job_id = job_id_of(request)
    await services.gate.job(request, job_id)
    query = query_of(request)
    after = query.get("after", "0")
    if after != "0" and not is_entry_id(after):
        raise InvalidRequest(f"after must be an entry id like 1700000000000-0, got {after!r}")
    raw_limit = query.get("limit", "100")
    limit = ascii_int(raw_limit)
    if limit is None or not 1 <= limit <= MAX_OUTPUT_PAGE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_OUTPUT_PAGE}")
    kind = query.get("kind")
    if kind is not None and kind not in _KINDS:
        raise InvalidRequest(f"kind must be log or output, got {kind!r}")
    entries = await services.store.output(job_id, after=after, limit=limit)
    if not entries and await services.store.get(job_id) is None:
        raise JobNotFound(job_id)
    parts: list[EntryJSON] = []
    for entry_id, data in entries:
        if kind is None or data.startswith(b'{"kind":"%s"' % kind.encode()):
            # An entry is stored without its id, which is the stream's: splice
            # the id in rather than decode and encode every entry of the page again.
            parts.append(msgspec.Raw(b'{"id":"%s",' % entry_id.encode() + data[1:]))
    gap = Gap.between(after, entries[0][0]) if entries else None
    cursor = entries[-1][0] if entries else after
    return json_response(msgspec.json.encode(OutputPage(parts, gap, cursor)))


async def stats(request: Request) -> Response:
    services = services_of(request)
    services.gate.key(request)
    store, registry = services.store, services.registry
    per_minute = await store.ended_per_minute(STATS_MINUTES)
    body = Stats(
        counts=await store.counts(),
        queue_depth=await services.lifecycle.queue_depth(),
        workers=msgspec.convert(await registry.workers(), list[Worker]),
        ended_per_minute=[
            Minute(
                minute * 60,
                finished=row.get("finished", 0),
                failed=row.get("failed", 0),
                canceled=row.get("canceled", 0),
            )
            for minute, row in per_minute
        ],
    )
    return json_response(msgspec.json.encode(body), headers={"Cache-Control": "no-store"})


routes = [
    Route("/jobs/{job_id}/retry", retry_job, methods=["POST"]),
    Route("/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/jobs/{job_id}/detail", job_detail, methods=["GET"]),
    Route("/jobs/{job_id}/output", job_output, methods=["GET"]),
    Route("/stats", stats, methods=["GET"]),
]
