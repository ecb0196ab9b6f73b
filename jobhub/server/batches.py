"""The HTTP API of batches: many jobs watched as one (jobhub/core/batch.py).

POST   /batches                  {"jobs": [{"function", "args", "kwargs", "job_id"?,
                                 "weight"?, "tags"?}, ...], "batch_id"?, "open"?,
                                 "callback_url"?}  -> 202 {"batch_id", "job_ids", "batch"}
GET    /batches                  recent batches, newest first, cursor-paged
GET    /batches/{id}             the batch's snapshot: one read, whatever its size
GET    /batches/{id}/jobs        ?status=&after=&limit=: its children's snapshots, in order
GET    /batches/{id}/events      SSE: the batch, and each child as an event named ``job``
                                 (``?jobs=false``: the batch alone)
POST   /batches/{id}/jobs        add children to an open batch (the body of POST /batches)
POST   /batches/{id}/seal        no more children; 409 for any added after
POST   /batches/{id}/cancel      cancel every child not ended; the batch ends canceled
POST   /batches/{id}/retry       the failed and canceled children run again, as new jobs
DELETE /batches/{id}             an ended batch and its children

Each child is checked as ``POST /jobs`` checks a job, and all of them before any is
created: a bad one answers 4xx and nothing is created. With API keys on, creating a batch
hands out a token for it (``Jobhub-Token``, and a cookie for its path) that opens the batch,
its children and their streams: a scoped token (jobhub/server/scopes.py) whose scope is
the batch.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub.core.batch import MAX_BATCH_JOBS, MAX_WEIGHT, BatchSnapshot
from jobhub.core.exceptions import BatchNotFound, Forbidden, InvalidRequest, UnknownFunction
from jobhub.core.parsing import ascii_int
from jobhub.core.snapshot import Status
from jobhub.lifecycle.batches import ChildSpec
from jobhub.server.auth import COOKIE
from jobhub.server.routes import (
    MAX_PAGE,
    TOKEN_HEADER,
    JobId,
    KwargName,
    SnapshotJSON,
    encoded,
)
from jobhub.server.scopes import (
    Action,
    Grant,
    Scope,
    Tags,
    TokenRequest,
    bearer,
    forced_tags,
    is_scoped,
)
from jobhub.server.services import (
    MAX_NESTING,
    decode_body,
    json_response,
    query_of,
    read_json,
    services_of,
    too_deep,
    valid_id,
)
from jobhub.server.streaming.batches import batch_stream
from jobhub.server.streaming.events import RETRY_MS
from jobhub.webhooks.deliveries import check_target

__all__ = [
    "BATCH_BODY_BYTES",
    "BatchCreated",
    "BatchJob",
    "BatchJobsPage",
    "BatchPage",
    "BatchRequest",
    "ChildrenAdded",
    "routes",
]

BATCH_BODY_BYTES = MAX_BATCH_JOBS * 1024
"""The largest body of ``POST /batches`` (or ``JOBHUB_MAX_BODY_BYTES`` if larger): 1 KiB
per child on average at the most children."""

BatchJSON = Annotated[msgspec.Raw, encoded(BatchSnapshot)]


class BatchJob(msgspec.Struct, forbid_unknown_fields=True):
    """One child of ``POST /batches``."""

    function: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    args: list[Any] = []
    kwargs: dict[KwargName, Any] = {}
    job_id: JobId | None = None
    weight: Annotated[int, msgspec.Meta(ge=1, le=MAX_WEIGHT)] = 1
    """How much the child counts in the batch's percent."""
    tags: Tags = []


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /batches`` (and, with ``jobs`` alone, ``POST /batches/{id}/jobs``)."""

    jobs: list[BatchJob]
    batch_id: JobId | None = None
    open: bool = False
    """Keep the batch open for more children until ``POST /batches/{id}/seal``."""
    callback_url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    """Where to POST the batch's final snapshot, signed, once it ends."""


class BatchCreated(msgspec.Struct):
    """``POST /batches``: 202."""

    batch_id: str
    job_ids: list[str]
    batch: BatchJSON


class ChildrenAdded(msgspec.Struct):
    """``POST /batches/{id}/jobs`` and ``/retry``: the new children and the batch."""

    job_ids: list[str]
    batch: BatchJSON


class BatchPage(msgspec.Struct):
    """``GET /batches``: newest first."""

    batches: list[BatchJSON]
    next_cursor: str | None


class BatchJobsPage(msgspec.Struct):
    """``GET /batches/{id}/jobs``: in the batch's order."""

    jobs: list[SnapshotJSON]
    next_after: int | None
    """Pass it as ``after`` for the next page; null after the last."""


async def _body(request: Request, *, adding: bool) -> BatchRequest:
    services = services_of(request)
    limit = max(services.settings.max_body_bytes, BATCH_BODY_BYTES)
    req = decode_body(await read_json(request, limit), BatchRequest)
    if adding and (req.batch_id is not None or req.open or req.callback_url is not None):
        raise InvalidRequest("adding to a batch takes only `jobs`")
    if not req.jobs and not (req.open or adding):
        raise InvalidRequest("`jobs` is empty: a batch needs at least one job (or open: true)")
    if len(req.jobs) > MAX_BATCH_JOBS:
        raise InvalidRequest(f"{len(req.jobs):,} jobs: at most {MAX_BATCH_JOBS:,} per request")
    seen: set[str] = set()
    for i, job in enumerate(req.jobs):
        if too_deep([job.args, job.kwargs]):
            raise InvalidRequest(
                f"jobs[{i}]: args and kwargs may nest at most {MAX_NESTING} levels"
            )
        if job.job_id is not None:
            if job.job_id in seen:
                raise InvalidRequest(f"jobs[{i}]: job id {job.job_id!r} is given twice")
            seen.add(job.job_id)
    for function in sorted({job.function for job in req.jobs}):
        if not await services.registry.is_offered(function):
            raise UnknownFunction(function, await services.registry.live_functions())
    if req.callback_url is not None:
        if not services.settings.webhook_secret:
            raise InvalidRequest("webhooks are not enabled here (JOBHUB_WEBHOOK_SECRET)")
        await check_target(req.callback_url, allow_private=services.settings.webhook_allow_private)
    return req


def _specs(req: BatchRequest, tags: list[str] | None) -> list[ChildSpec]:
    return [
        ChildSpec(job.function, job.args, job.kwargs, job.job_id, job.weight,
                  job.tags if tags is None else tags)
        for job in req.jobs
    ]  # fmt: skip


async def create_batch(request: Request) -> Response:
    services = services_of(request)
    grant = await services.gate.starter(request)
    req = await _body(request, adding=False)
    await services.gate.claim(grant, [job.job_id for job in req.jobs if job.job_id is not None])
    forced = None if grant is None else forced_tags(grant, [t for j in req.jobs for t in j.tags])
    batch_id, job_ids, data = await services.batches.submit(
        _specs(req, forced), batch_id=req.batch_id, open_=req.open, callback_url=req.callback_url
    )
    body = msgspec.json.encode(BatchCreated(batch_id, job_ids, msgspec.Raw(data)))
    response = json_response(body, 202, {"Location": f"/batches/{batch_id}"})
    return _with_batch_token(request, response, batch_id, grant)


def _with_batch_token(
    request: Request, response: Response, batch_id: str, grant: Grant | None
) -> Response:
    """The batch's token, as ``POST /jobs`` hands out a job's: a header for API clients and
    an HttpOnly cookie for the batch's path (reads only, as a job's cookie). Started with a
    scoped token (``grant``), it may do no more than that token, and no longer."""
    gate = services_of(request).gate
    if gate.open or gate.scopes is None or gate.tokens is None:
        return response
    ttl = gate.tokens.ttl_seconds
    actions: list[Action] = ["read", "cancel"]
    if grant is not None:
        actions = [action for action in actions if grant.allows(action)]
        if not actions:
            return response
    asked = TokenRequest(Scope(batches=[batch_id]), actions, ttl)
    token = gate.scopes.issue(asked, within=grant).token
    response.headers[TOKEN_HEADER] = token
    response.set_cookie(
        COOKIE, token, max_age=ttl, path=f"/batches/{batch_id}", httponly=True,
        secure=request.url.scheme == "https", samesite="lax",
    )  # fmt: skip
    return response


async def _allowed(request: Request, action: str) -> str:
    """The batch id of the path, once the request may do ``action`` on it: an API key, a
    signed-in console, or a scoped token naming the batch (as a Bearer header, ``?token=``,
    or for a read the batch's cookie)."""
    batch_id, _ = await _access(request, action)
    return batch_id


async def _access(request: Request, action: str) -> tuple[str, Grant | None]:
    """``_allowed``'s batch id, and the grant of the scoped token that was let in (None for
    an API key or a session): a stream ends with its token (``Gate.held``)."""
    batch_id = valid_id(request.path_params["batch_id"])
    gate = services_of(request).gate
    credential = bearer(request) or request.query_params.get("token")
    cookie = request.cookies.get(COOKIE)
    by_cookie = cookie if credential is None and request.method == "GET" else None
    if by_cookie and is_scoped(by_cookie) and not gate.open and not gate.session(request):
        grant = await gate.grant(by_cookie, "read")
        if batch_id not in grant.batches:
            raise Forbidden(f"batch {batch_id!r} is outside this token's scope")
        return batch_id, grant
    return batch_id, await gate.batch(request, batch_id, action)


async def get_batch(request: Request) -> Response:
    batch_id = await _allowed(request, "read")
    data = await services_of(request).batches.store.get(batch_id)
    if data is None:
        raise BatchNotFound(batch_id)
    return json_response(data, headers={"Cache-Control": "no-cache"})


async def list_batches(request: Request) -> Response:
    services = services_of(request)
    services.gate.key(request)
    query = query_of(request)
    limit = _bounded(query.get("limit", "20"), "limit", 1, MAX_PAGE)
    cursor = query.get("cursor")
    before = None if cursor is None else _bounded(cursor, "cursor", 0, 10**18 - 1)
    page, after = await services.batches.store.list(before=before, limit=limit)
    body = BatchPage([msgspec.Raw(d) for d in page], None if after is None else str(after))
    return json_response(msgspec.json.encode(body))


async def batch_jobs(request: Request) -> Response:
    """``GET /batches/{id}/jobs?status=&after=&limit=``: the children after place ``after``
    (0: from the first), with ``status`` only those that have it now."""
    batch_id = await _allowed(request, "read")
    services = services_of(request)
    query = query_of(request)
    status = query.get("status")
    if status is not None and status not in Status.__members__.values():
        raise InvalidRequest(f"unknown status {status!r}: one of {', '.join(Status)}")
    limit = _bounded(query.get("limit", "50"), "limit", 1, MAX_PAGE)
    place = _bounded(query.get("after", "0"), "after", 0, 10**12)
    store = services.batches.store
    if await store.get(batch_id) is None:
        raise BatchNotFound(batch_id)
    found: list[msgspec.Raw] = []
    # A status filter reads on until the page is full, but at most ten pages' worth of
    # children per request: the cursor says where to go on.
    for _ in range(10 if status is not None else 1):
        children = await store.children(batch_id, after=place, limit=limit)
        if not children:
            return _jobs_page(found, None)
        datas = await store.snapshots(batch_id, [job_id for _, job_id in children])
        for (at, _), data in zip(children, datas, strict=True):
            if data is not None and (status is None or _status_of(data) == status):
                found.append(msgspec.Raw(data))
                if len(found) == limit:
                    return _jobs_page(found, at)
            place = at
        if len(children) < limit:
            return _jobs_page(found, None)
    return _jobs_page(found, place)


def _jobs_page(found: list[msgspec.Raw], after: int | None) -> Response:
    return json_response(msgspec.json.encode(BatchJobsPage(found, after)))


class _StatusHead(msgspec.Struct):
    status: str


def _status_of(data: bytes) -> str:
    return msgspec.json.decode(data, type=_StatusHead).status


def _bounded(raw: str, name: str, low: int, high: int) -> int:
    value = ascii_int(raw)
    if value is None or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


async def batch_events(request: Request) -> Response:
    """``GET /batches/{id}/events[?jobs=false]``: see jobhub/server/streaming/batches.py."""
    batch_id, grant = await _access(request, "read")
    jobs = query_of(request).get("jobs", "true")
    if jobs not in ("true", "false"):
        raise InvalidRequest(f"jobs must be true or false, got {jobs!r}")
    return await batch_stream(request, batch_id, RETRY_MS, jobs=jobs == "true", grant=grant)


async def add_jobs(request: Request) -> Response:
    services = services_of(request)
    batch_id = valid_id(request.path_params["batch_id"])
    grant = await services.gate.starter(request)
    if grant is not None and batch_id not in grant.batches:
        # A token that may start jobs adds them only to a batch of its own scope.
        raise Forbidden(f"batch {batch_id!r} is outside this token's scope")
    req = await _body(request, adding=True)
    await services.gate.claim(grant, [job.job_id for job in req.jobs if job.job_id is not None])
    forced = None if grant is None else forced_tags(grant, [t for j in req.jobs for t in j.tags])
    job_ids, data = await services.batches.add(batch_id, _specs(req, forced))
    return json_response(msgspec.json.encode(ChildrenAdded(job_ids, msgspec.Raw(data))), 202)


async def seal_batch(request: Request) -> Response:
    batch_id = await _allowed(request, "start")
    return json_response(await services_of(request).batches.seal(batch_id))


async def cancel_batch(request: Request) -> Response:
    batch_id = await _allowed(request, "cancel")
    return json_response(await services_of(request).batches.cancel(batch_id))


async def retry_batch(request: Request) -> Response:
    batch_id = await _allowed(request, "retry")
    job_ids, data = await services_of(request).batches.retry(batch_id)
    return json_response(msgspec.json.encode(ChildrenAdded(job_ids, msgspec.Raw(data))), 202)


async def delete_batch(request: Request) -> Response:
    batch_id = await _allowed(request, "delete")
    await services_of(request).batches.delete(batch_id)
    return Response(status_code=204)


routes = [
    Route("/batches", create_batch, methods=["POST"]),
    Route("/batches", list_batches, methods=["GET"]),
    Route("/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/batches/{batch_id}", delete_batch, methods=["DELETE"]),
    Route("/batches/{batch_id}/jobs", batch_jobs, methods=["GET"]),
    Route("/batches/{batch_id}/jobs", add_jobs, methods=["POST"]),
    Route("/batches/{batch_id}/events", batch_events, methods=["GET"]),
    Route("/batches/{batch_id}/seal", seal_batch, methods=["POST"]),
    Route("/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    Route("/batches/{batch_id}/retry", retry_batch, methods=["POST"]),
]
