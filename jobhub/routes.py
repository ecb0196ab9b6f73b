"""The HTTP API: start a job, read its snapshot, stream its snapshots.

POST /jobs                 {"function": "demo.count", "kwargs": {"steps": 5}}  -> 202
GET  /jobs?status=&function=&limit=&cursor=   newest first, cursor-paged
GET  /jobs/{id}            the snapshot; ETag/If-None-Match make idle polls cheap
GET  /jobs/{id}/events     text/event-stream of snapshots until the job ends
GET  /events?jobs=a,b      one stream for several jobs; GET /events: every job's
GET  /jobs/{id}/history    every snapshot so far, in seq order
POST /jobs/{id}/cancel     cancel a queued or running job
POST /jobs/{id}/pause      pause a running job at its next progress report; /resume
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from arq.connections import ArqRedis
from arq.jobs import Job, ResultNotFound
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from .exceptions import (
    InvalidRequest,
    JobIsFinal,
    JobNotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnknownFunction,
    WrongStatus,
)
from .hub import Frame, Hub, Watch
from .settings import Settings
from .snapshot import JobError, Snapshot, Status, decode
from .sse import HEARTBEAT, EventStream, Streams
from .store import Store

__all__ = ["JOB_ID_PATTERN", "MAX_JOBS_PER_STREAM", "EnqueueRequest", "Services", "routes"]

logger = logging.getLogger("jobhub.web")

JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)
STATIC = __file__.rsplit("/", 1)[0] + "/static"

# ARQ reads keyword arguments that start with "_" as its own options (_job_id, _defer_by…),
# so a client must not be able to pass one through to enqueue_job.
KwargName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=100)]


class EnqueueRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /jobs``."""

    function: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    args: list[Any] = []
    kwargs: dict[KwargName, Any] = {}
    job_id: Annotated[str, msgspec.Meta(pattern=JOB_ID_PATTERN)] | None = None
    """A client-chosen id is an idempotency key: sending it again returns the same job."""


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes need, built once by the app's lifespan."""

    settings: Settings
    store: Store
    hub: Hub
    streams: Streams
    arq: ArqRedis


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _job_id(request: Request) -> str:
    return _valid_id(request.path_params["job_id"])


def _valid_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise InvalidRequest(f"invalid job id {job_id!r}: expected {JOB_ID_PATTERN}")
    return job_id


def _json(data: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(data, status_code, headers, media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
    return bytes(body)


async def create_job(request: Request) -> Response:
    services = _services(request)
    body = await _read_body(request, services.settings.max_body_bytes)
    try:
        req = msgspec.json.decode(body, type=EnqueueRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        # msgspec decodes nesting recursively; ~1000 levels exhaust Python's stack.
        raise InvalidRequest(f"request body nests deeper than {MAX_NESTING} levels") from None
    if _too_deep([req.args, req.kwargs], MAX_NESTING):
        raise InvalidRequest(f"args and kwargs may nest at most {MAX_NESTING} levels")

    store = services.store
    if not await store.is_known_function(req.function):
        raise UnknownFunction(req.function, await store.known_functions())
    # 128 random bits in the id's own alphabet: unguessable, and valid as a client id too.
    job_id = req.job_id or secrets.token_urlsafe(16)
    created, data = await store.create(Snapshot.queued(job_id, req.function))
    location = {"Location": f"/jobs/{job_id}"}
    if not created:
        existing = decode(data)
        if existing.function != req.function:
            raise InvalidRequest(f"job id {job_id!r} is already used by another function")
        logger.info("job %s exists (seq %d); not enqueued again", job_id, existing.seq)
        return _json(data, 200, location)

    try:
        enqueued = await services.arq.enqueue_job(
            req.function,
            *req.args,
            _job_id=job_id,
            _queue_name=services.settings.queue_name,
            **req.kwargs,
        )
    except RedisError as exc:
        await _abandon(store, job_id, f"could not enqueue: {exc}")
        raise ServiceUnavailable(f"could not enqueue the job: {exc}") from exc
    if enqueued is None:
        # ARQ still holds a job or result under this id, from before our snapshot expired.
        await _abandon(store, job_id, "ARQ already holds a job with this id")
        raise InvalidRequest(f"job id {job_id!r} is still held by the queue; use another")
    return _json(data, 202, location)


async def cancel_job(request: Request) -> Response:
    """``POST /jobs/{id}/cancel``: the snapshot says ``canceled`` at once, and ARQ is asked to
    abort the job: a queued one never starts, a running one is cancelled (its ``finally``
    blocks run). A job that already ended answers 409 with its snapshot."""
    services = _services(request)
    job_id = _job_id(request)
    try:
        data = await services.store.write(
            job_id, {"status": Status.CANCELED, "message": "canceled"}
        )
    except JobIsFinal as exc:
        return await _conflict(services.store, exc)
    job = Job(job_id, services.arq, _queue_name=services.settings.queue_name)
    # abort() also waits for the job's result; only the request to abort is wanted here.
    with suppress(TimeoutError, ResultNotFound):
        await job.abort(timeout=0, poll_delay=0)
    return _json(data)


async def pause_job(request: Request) -> Response:
    """``POST /jobs/{id}/pause``: cooperative; the job's next progress report waits until it
    is resumed. Only a job that reports progress (``running``) can be paused."""
    return await _guarded(
        request,
        {"status": Status.PAUSED, "message": "paused"},
        only_from=Status.RUNNING,
        already=Status.PAUSED,
        refusal="only a running job, one that reports progress, can be paused",
    )


async def resume_job(request: Request) -> Response:
    """``POST /jobs/{id}/resume``: a paused job goes on from where it was."""
    return await _guarded(
        request,
        {"status": Status.RUNNING, "message": "resumed"},
        only_from=Status.PAUSED,
        already=Status.RUNNING,
        refusal="only a paused job can be resumed",
    )


async def _guarded(
    request: Request,
    patch: dict[str, Any],
    *,
    only_from: Status,
    already: Status,
    refusal: str,
) -> Response:
    store = _services(request).store
    job_id = _job_id(request)
    try:
        return _json(await store.write(job_id, patch, only_from=[only_from]))
    except JobIsFinal as exc:
        return await _conflict(store, exc)
    except WrongStatus as exc:
        if exc.status == already:  # asking twice is no error: nothing more to do
            return _json((await store.get(job_id)) or b"null")
        wrong = WrongStatus(job_id, exc.status, f"job {job_id!r} is {exc.status}: {refusal}")
        return await _conflict(store, wrong)


async def _conflict(store: Store, exc: JobIsFinal | WrongStatus) -> Response:
    """409 with the job's snapshot, so that the client can draw the truth at once."""
    body = {**exc.to_body(), "snapshot": await store.read(exc.job_id)}
    return _json(msgspec.json.encode(body), 409)


MAX_NESTING = 64


def _too_deep(value: Any, limit: int) -> bool:
    """Whether lists and dicts inside ``value`` nest more than ``limit`` levels."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


async def _abandon(store: Store, job_id: str, detail: str) -> None:
    """Mark a job that never reached the queue as failed, so no one waits on it forever."""
    patch = {
        "status": Status.FAILED,
        "message": "not enqueued",
        "error": JobError("EnqueueError", detail),
    }
    try:
        await store.write(job_id, patch)
    except (RedisError, JobIsFinal, JobNotFound):
        logger.exception("could not mark job %s as failed", job_id)


async def get_job(request: Request) -> Response:
    job_id = _job_id(request)
    found = await _services(request).store.get_versioned(job_id)
    if found is None:
        raise JobNotFound(job_id)
    seq, data = found
    etag = f'"{seq}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return _json(data, 200, headers)


async def list_jobs(request: Request) -> Response:
    """``GET /jobs?status=&function=&limit=&cursor=``: newest first, a page at a time."""
    query = request.query_params
    # A parameter given must be valid, even if empty: `?status=` is no way to ask for all.
    status = query.get("status")
    if status is not None and status not in Status.__members__.values():
        raise InvalidRequest(f"unknown status {status!r}: one of {', '.join(Status)}")
    limit = _bounded_int(query.get("limit", "20"), "limit", 1, MAX_PAGE)
    cursor = query.get("cursor")
    before = _bounded_int(cursor, "cursor", 0, 10**18 - 1) if cursor is not None else None
    function = query.get("function")
    jobs, after = await _services(request).store.list_jobs(
        status=Status(status) if status is not None else None,
        function=function,
        limit=limit,
        before=before,
    )
    next_cursor = b"null" if after is None else b'"%d"' % after
    return _json(b'{"jobs":[' + b",".join(jobs) + b'],"next_cursor":' + next_cursor + b"}")


MAX_PAGE = 100


def _bounded_int(raw: str, name: str, low: int, high: int) -> int:
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


async def job_history(request: Request) -> Response:
    job_id = _job_id(request)
    store = _services(request).store
    entries = await store.history(job_id)
    if not entries and await store.get(job_id) is None:
        raise JobNotFound(job_id)
    return _json(b"[" + b",".join(entries) + b"]")


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags or "*" in tags


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id", "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 19 else 0


async def job_events(request: Request) -> Response:
    services = _services(request)
    job_id = _job_id(request)
    seen = _last_event_id(request)
    # Subscribe first, then read: a snapshot published in between is caught by the
    # subscription, and one published before is in what we read.
    watch = await services.hub.watch([job_id], {job_id: seen})
    try:
        data = await services.store.get(job_id)
    except BaseException:
        watch.close()
        raise
    if data is None:
        watch.close()
        raise JobNotFound(job_id)
    frame = Frame(data)
    if frame.terminal and frame.seq <= seen:
        # The client has the final state; 204 tells EventSource to stop reconnecting.
        watch.close()
        return Response(status_code=204)
    watch.offer(frame)
    return EventStream(_stream(watch), watch, services.streams)


async def many_events(request: Request) -> Response:
    """``GET /events?jobs=a,b,c``: one stream for several jobs (browsers allow only six
    HTTP/1.1 connections per origin, shared by every tab).

    Each event's id is a cursor: the seq the client then holds of every listed job, in the
    order listed (``4.0.12``). A reconnect's ``Last-Event-ID`` therefore tells which
    snapshots the client has: it gets each job's current snapshot unless it already has it,
    never one twice, and 204 once it holds the final snapshot of every job.
    """
    services = _services(request)
    if "jobs" not in request.query_params:
        # Every job's snapshots from now on, for a dashboard; the stream does not end.
        watch = await services.hub.watch_all()
        return EventStream(_stream_all(watch), watch, services.streams)
    job_ids = _job_list(request.query_params.get("jobs", ""))
    seen = _cursor(request.headers.get("last-event-id", ""), len(job_ids))
    watch = await services.hub.watch(job_ids, dict(zip(job_ids, seen, strict=True)))
    try:
        datas = await services.store.get_many(job_ids)
    except BaseException:
        watch.close()
        raise
    missing = [job_id for job_id, data in zip(job_ids, datas, strict=True) if data is None]
    if missing:
        watch.close()
        raise JobNotFound(", ".join(missing))
    frames = [Frame(data) for data in datas if data is not None]
    done = {f.job_id for f, held in zip(frames, seen, strict=True) if f.terminal and f.seq <= held}
    if len(done) == len(job_ids):
        watch.close()
        return Response(status_code=204)
    for frame in frames:
        watch.offer(frame)
    return EventStream(_many_stream(watch, job_ids, seen, done), watch, services.streams)


MAX_JOBS_PER_STREAM = 100


def _job_list(raw: str) -> list[str]:
    job_ids = list(dict.fromkeys(j.strip() for j in raw.split(",") if j.strip()))
    if not job_ids:
        raise InvalidRequest("name the jobs to watch: /events?jobs=<id>,<id>,...")
    if len(job_ids) > MAX_JOBS_PER_STREAM:
        raise InvalidRequest(f"at most {MAX_JOBS_PER_STREAM} jobs per stream")
    return [_valid_id(job_id) for job_id in job_ids]


def _cursor(raw: str, count: int) -> list[int]:
    parts = raw.strip().split(".")
    if len(parts) != count or not all(p.isdigit() and len(p) < 19 for p in parts):
        return [0] * count  # no cursor, or not one of this stream: start from scratch
    return [int(p) for p in parts]


async def _updates(watch: Watch) -> AsyncIterator[list[Frame] | None]:
    """A watch's news, batch by batch, with ``None`` when a heartbeat is due; it ends when
    the watch is closed (the server shutting down: the client reconnects elsewhere).
    ``EventStream`` closes the watch however the stream ends."""
    while True:
        frames = await watch.next()
        if frames:
            yield frames
        elif watch.closed:
            return
        else:
            yield None


async def _stream(watch: Watch) -> AsyncIterator[bytes]:
    """One job's snapshots; ends after a terminal one."""
    async for frames in _updates(watch):
        if frames is None:
            yield HEARTBEAT
            continue
        for frame in frames:
            yield frame.event
        if frames[-1].terminal:
            return


async def _many_stream(
    watch: Watch, job_ids: list[str], seen: list[int], done: set[str]
) -> AsyncIterator[bytes]:
    """Several jobs' snapshots under cursor ids; ends once every job is terminal."""
    position = {job_id: i for i, job_id in enumerate(job_ids)}
    async for frames in _updates(watch):
        if frames is None:
            yield HEARTBEAT
            continue
        for frame in frames:
            seen[position[frame.job_id]] = frame.seq
            if frame.terminal:
                done.add(frame.job_id)
            yield frame.with_id(".".join(map(str, seen)))
        if len(done) == len(job_ids):
            return


async def _stream_all(watch: Watch) -> AsyncIterator[bytes]:
    """Every job's snapshots; never ends on its own."""
    async for frames in _updates(watch):
        if frames is None:
            yield HEARTBEAT
            continue
        for frame in frames:
            yield frame.event


async def index(request: Request) -> Response:
    return FileResponse(f"{STATIC}/index.html")


async def dashboard(request: Request) -> Response:
    return FileResponse(f"{STATIC}/dashboard.html")


routes = [
    Route("/", index, methods=["GET"]),
    Route("/dashboard", dashboard, methods=["GET"]),
    Route("/jobs", create_job, methods=["POST"]),
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/jobs/{job_id}/history", job_history, methods=["GET"]),
    Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/jobs/{job_id}/pause", pause_job, methods=["POST"]),
    Route("/jobs/{job_id}/resume", resume_job, methods=["POST"]),
    Route("/events", many_events, methods=["GET"]),
]
