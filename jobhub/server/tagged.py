"""Jobs per user: the list of jobs (by tag too) and the scoped tokens that open them.

GET    /jobs?tag=&status=&function=&limit=&cursor=   newest first, cursor-paged
POST   /tokens               {"scope": {"tags": [...]}, "actions": [...], "ttl_seconds": 900}
DELETE /tokens/{token_id}    revoke a scoped token in every web process

``?tag=`` reads the tag's own index, so a page costs O(page) however many jobs there are.
With a scoped token (jobhub/server/scopes.py) the list must name a tag the token holds;
``GET /jobs`` without ``?tag=`` is every job's list, an API key's alone.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub.core.exceptions import InvalidRequest
from jobhub.core.parsing import ascii_int
from jobhub.core.snapshot import Status
from jobhub.server.routes import MAX_PAGE, JobPage
from jobhub.server.scopes import Scopes, TokenRequest, valid_tag
from jobhub.server.services import decode_body, json_response, query_of, read_json, services_of

__all__ = ["create_token", "list_jobs", "revoke_token", "routes"]


async def list_jobs(request: Request) -> Response:
    """``GET /jobs?tag=&status=&function=&limit=&cursor=``: newest first, a page at a time."""
    services = services_of(request)
    query = query_of(request)
    tag = query.get("tag")
    if tag is not None:
        valid_tag(tag)
    await services.gate.tag(request, tag)
    # A parameter given must be valid, even if empty: `?status=` is no way to ask for all.
    status = query.get("status")
    if status is not None and status not in Status.__members__.values():
        raise InvalidRequest(f"unknown status {status!r}: one of {', '.join(Status)}")
    limit = _bounded_int(query.get("limit", "20"), "limit", 1, MAX_PAGE)
    cursor = query.get("cursor")
    before = _bounded_int(cursor, "cursor", 0, 10**18 - 1) if cursor is not None else None
    jobs, after = await services.store.list_jobs(
        status=Status(status) if status is not None else None,
        function=query.get("function"),
        limit=limit,
        before=before,
        tag=tag,
    )
    page = JobPage([msgspec.Raw(data) for data in jobs], None if after is None else str(after))
    return json_response(msgspec.json.encode(page))


def _bounded_int(raw: str, name: str, low: int, high: int) -> int:
    value = ascii_int(raw)
    if value is None or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


async def create_token(request: Request) -> Response:
    """``POST /tokens`` (API key only): a scoped token, ``{"token", "expires_at",
    "token_id"}``."""
    services = services_of(request)
    services.gate.key(request)
    req = decode_body(await read_json(request, services.settings.max_body_bytes), TokenRequest)
    grant = _scopes(request).issue(req)
    return json_response(msgspec.json.encode(grant), 201)


async def revoke_token(request: Request) -> Response:
    """``DELETE /tokens/{token_id}`` (API key only): refused from now on, everywhere."""
    services_of(request).gate.key(request)
    await _scopes(request).revoke(request.path_params["token_id"])
    return Response(status_code=204)


def _scopes(request: Request) -> Scopes:
    scopes = services_of(request).gate.scopes
    if scopes is None:
        raise InvalidRequest("scoped tokens are not enabled here (JOBHUB_TOKEN_SECRET)")
    return scopes


routes = [
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/tokens", create_token, methods=["POST"]),
    Route("/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
