"""The HTTP API: start jobs, read and change them (streams are in events.py; the list of
jobs and scoped tokens in tagged.py).

POST /jobs                 {"function": "demo.count", "kwargs": {"steps": 5}}  -> 202
GET  /jobs/{id}            the snapshot; ETag/If-None-Match make idle polls cheap
GET  /jobs/{id}/events     text/event-stream of snapshots until the job ends
GET  /events?jobs=a,b      one stream for several jobs; GET /events: every job's
GET  /jobs/{id}/history    every snapshot so far, in seq order
POST /jobs/{id}/cancel     cancel a queued or running job
POST /jobs/{id}/pause      pause a running job at its next progress report; /resume
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from jobhub.core.exceptions import (
    Forbidden,
    InvalidRequest,
    JobhubError,
    JobIsFinal,
    JobNotFound,
    UnknownFunction,
    WrongStatus,
)
from jobhub.core.logs import job
from jobhub.core.snapshot import Snapshot, decode
from jobhub.server.archived import archived_history, archived_job
from jobhub.server.auth import COOKIE, instance_of
from jobhub.server.scopes import Grant, Tags, forced_tags
from jobhub.server.services import (
    END,
    JOB_ID_PATTERN,
    MAX_NESTING,
    decode_body,
    job_id_of,
    json_response,
    read_json,
    services_of,
    too_deep,
)
from jobhub.server.streaming.events import job_events, many_events
from jobhub.store.store import Store
from jobhub.webhooks.deliveries import Delivery, check_target

__all__ = [
    "MAX_DEFER_SECONDS",
    "MAX_PAGE",
    "SCHEMA_REF",
    "TOKEN_HEADER",
    "Conflict",
    "DeliveryJSON",
    "EnqueueRequest",
    "Error",
    "ErrorDetail",
    "JobId",
    "JobPage",
    "SnapshotJSON",
    "conflict",
    "encoded",
    "error_of",
    "routes",
    "with_token",
]

logger = logging.getLogger("jobhub.web")

STATIC = str(Path(__file__).resolve().parent.parent / "static")

MAX_DEFER_SECONDS = 366 * 24 * 3600

# ARQ reads keyword arguments that start with "_" as its own options (_job_id, _defer_by…);
# they are refused, so that a job's arguments never look like the queue's.
KwargName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]*" + END, max_length=100)]


JobId = Annotated[str, msgspec.Meta(pattern=JOB_ID_PATTERN)]

SCHEMA_REF = "#/components/schemas/{name}"
"""Where the OpenAPI document keeps the schema of each model (jobhub.server.openapi)."""


def encoded(model: type[msgspec.Struct]) -> msgspec.Meta:
    """Annotates a ``msgspec.Raw`` that holds ``model`` as JSON encoded before (a stored
    snapshot): the handler passes those bytes through, never decoding them again, and the
    OpenAPI document still names the model the body carries::

        SnapshotJSON = Annotated[msgspec.Raw, encoded(Snapshot)]
    """
    return msgspec.Meta(extra_json_schema={"$ref": SCHEMA_REF.format(name=model.__name__)})


SnapshotJSON = Annotated[msgspec.Raw, encoded(Snapshot)]
DeliveryJSON = Annotated[msgspec.Raw, encoded(Delivery)]


class ErrorDetail(msgspec.Struct):
    type: str
    detail: str
    known: list[str] | msgspec.UnsetType = msgspec.UNSET
    """For an ``UnknownFunction``: the functions live workers run."""


class Error(msgspec.Struct):
    """Every error answer: ``{"error": {"type": ..., "detail": ...}}``."""

    error: ErrorDetail


def error_of(exc: JobhubError) -> Error:
    """The body that answers ``exc``."""
    return msgspec.convert(exc.to_body(), Error)


class Conflict(msgspec.Struct):
    """A 409: the error, and the job's snapshot as it is."""

    error: ErrorDetail
    snapshot: SnapshotJSON | None


class JobPage(msgspec.Struct):
    """``GET /jobs``: newest first."""

    jobs: list[SnapshotJSON]
    next_cursor: str | None
    """Pass it as ``cursor`` for the next page; null after the last."""


class EnqueueRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /jobs``."""

    function: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    args: list[Any] = []
    kwargs: dict[KwargName, Any] = {}
    job_id: JobId | None = None
    """A client-chosen id is an idempotency key: sending it again returns the same job."""
    callback_url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    """Where to POST the job's final snapshot, signed (see jobhub.webhooks)."""
    defer_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_DEFER_SECONDS)] = 0.0
    """Start the job no sooner than this many seconds from now (it stays ``queued``)."""
    tags: Tags = []
    """Up to 10 labels (``user:42``) to list and stream the job by; a scoped token's own."""


async def create_job(request: Request) -> Response:
    services = services_of(request)
    grant = await services.gate.starter(request)
    body = await read_json(request, services.settings.max_body_bytes)
    req = decode_body(body, EnqueueRequest)
    if too_deep([req.args, req.kwargs]):
        raise InvalidRequest(f"args and kwargs may nest at most {MAX_NESTING} levels")

    if req.callback_url is not None:
        if not services.settings.webhook_secret:
            raise InvalidRequest("webhooks are not enabled here (JOBHUB_WEBHOOK_SECRET)")
        allow_private = services.settings.webhook_allow_private
        await check_target(req.callback_url, allow_private=allow_private)
    if not await services.registry.is_offered(req.function):
        raise UnknownFunction(req.function, await services.registry.live_functions())
    await services.gate.claim(grant, [] if req.job_id is None else [req.job_id])
    job_id, created, data = await services.lifecycle.create(
        req.function,
        req.args,
        req.kwargs,
        job_id=req.job_id,
        callback_url=req.callback_url,
        defer_seconds=req.defer_seconds,
        tags=forced_tags(grant, req.tags),
    )
    location = {"Location": f"/jobs/{job_id}"}
    if not created:
        if grant is not None and not grant.covers(job_id, data):
            raise Forbidden(f"job id {job_id!r} is already used outside this token's scope")
        existing = decode(data)
        if existing.function != req.function:
            raise InvalidRequest(f"job id {job_id!r} is already used by another function")
        logger.info(
            "job %s exists (seq %d); not enqueued again", job_id, existing.seq, extra=job(job_id)
        )
        return _handed(request, json_response(data, 200, location), job_id, grant)
    services.metrics.enqueued.labels(req.function).inc()
    return _handed(request, json_response(data, 202, location), job_id, grant)


def _handed(request: Request, response: Response, job_id: str, grant: Grant | None) -> Response:
    # Started with a scoped token, the job gets no token of its own: the scoped token opens
    # it already, and a job's token would open it to cancel and pause whatever the scoped
    # token's actions, for JOBHUB_TOKEN_TTL, revoked or not.
    return response if grant is not None else with_token(request, response, job_id)


TOKEN_HEADER = "Jobhub-Token"


def with_token(request: Request, response: Response, job_id: str) -> Response:
    """Hand out the token of the job whose snapshot ``response`` carries: in a header for API
    clients, and as an HttpOnly cookie scoped to the job's path, which the browser then sends
    to its status and stream (the cookie opens reads only; see jobhub.auth)."""
    tokens = services_of(request).gate.tokens
    if tokens is not None:
        token = tokens.issue(job_id, instance_of(bytes(response.body)))
        response.headers[TOKEN_HEADER] = token
        response.set_cookie(
            COOKIE,
            token,
            max_age=tokens.ttl_seconds,
            path=f"/jobs/{job_id}",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )
    return response


async def cancel_job(request: Request) -> Response:
    """``POST /jobs/{id}/cancel``: the snapshot says ``canceled`` at once, and the queue is
    asked to abort the job: a queued one never starts, a running one is cancelled (its
    ``finally`` blocks run). A canceled job is answered as it is (asking twice is no
    error); one that ended otherwise answers 409 with its snapshot."""
    services = services_of(request)
    job_id = job_id_of(request)
    await services.gate.job(request, job_id)
    try:
        return json_response(await services.lifecycle.cancel(job_id))
    except (JobIsFinal, WrongStatus) as exc:
        return await conflict(services.store, exc)


async def pause_job(request: Request) -> Response:
    """``POST /jobs/{id}/pause``: cooperative; the job's next progress report waits until it
    is resumed. Only a job that reports progress (``running``) can be paused."""
    services = services_of(request)
    return await _guarded(
        request,
        services.lifecycle.pause,
        refusal="only a running job, one that reports progress, can be paused",
    )


async def resume_job(request: Request) -> Response:
    """``POST /jobs/{id}/resume``: a paused job goes on from where it was."""
    services = services_of(request)
    return await _guarded(
        request,
        services.lifecycle.resume,
        refusal="only a paused job can be resumed",
    )


async def _guarded(
    request: Request,
    change: Callable[[str], Awaitable[bytes]],
    *,
    refusal: str,
) -> Response:
    store = services_of(request).store
    job_id = job_id_of(request)
    await services_of(request).gate.job(request, job_id)
    try:
        return json_response(await change(job_id))
    except JobIsFinal as exc:
        return await conflict(store, exc)
    except WrongStatus as exc:
        # (Asking twice is no error: the lifecycle answers a change already in effect.)
        wrong = WrongStatus(job_id, exc.status, f"job {job_id!r} is {exc.status}: {refusal}")
        return await conflict(store, wrong)


async def conflict(store: Store, exc: JobIsFinal | WrongStatus) -> Response:
    """409 with the job's snapshot, so that the client can draw the truth at once."""
    data = await store.get(exc.job_id)
    body = Conflict(error_of(exc).error, None if data is None else msgspec.Raw(data))
    return json_response(msgspec.json.encode(body), 409)


MAX_PAGE = 100
"""The most jobs a page of ``GET /jobs`` holds (jobhub/server/tagged.py)."""


async def get_job(request: Request) -> Response:
    job_id = job_id_of(request)
    await services_of(request).gate.job(request, job_id)
    found = await services_of(request).store.get_versioned(job_id)
    if found is None:
        return await archived_job(request, job_id)  # JobNotFound unless the archive has it
    seq, data = found
    etag = f'"{seq}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return json_response(data, 200, headers)


async def job_history(request: Request) -> Response:
    job_id = job_id_of(request)
    await services_of(request).gate.job(request, job_id)
    store = services_of(request).store
    entries = await store.history(job_id)
    if not entries and await store.get(job_id) is None:
        return await archived_history(request, job_id)
    history: list[SnapshotJSON] = [msgspec.Raw(data) for data in entries]
    return json_response(msgspec.json.encode(history))


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags or "*" in tags


async def index(request: Request) -> Response:
    return FileResponse(f"{STATIC}/index.html")


async def dashboard(request: Request) -> Response:
    return FileResponse(f"{STATIC}/dashboard.html")


async def job_deliveries(request: Request) -> Response:
    """``GET /jobs/{id}/deliveries``: every attempt to deliver the job's webhook so far."""
    job_id = job_id_of(request)
    services = services_of(request)
    await services.gate.job(request, job_id)
    entries = await services.deliveries.read(job_id)
    if not entries and await services.store.get(job_id) is None:
        raise JobNotFound(job_id)
    attempts: list[DeliveryJSON] = [msgspec.Raw(data) for data in entries]
    return json_response(msgspec.json.encode(attempts))


routes = [
    Route("/", index, methods=["GET"]),
    Route("/dashboard", dashboard, methods=["GET"]),
    Route("/jobs", create_job, methods=["POST"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/jobs/{job_id}/history", job_history, methods=["GET"]),
    Route("/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/jobs/{job_id}/pause", pause_job, methods=["POST"]),
    Route("/jobs/{job_id}/resume", resume_job, methods=["POST"]),
    Route("/events", many_events, methods=["GET"]),
    Route("/jobs/{job_id}/deliveries", job_deliveries, methods=["GET"]),
]
