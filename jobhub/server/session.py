"""Signing a browser console in and out: an API key exchanged once for a session cookie.

POST   /session   {"api_key": "..."}  -> {"signed_in": true, "csrf": "..."} and the cookie
GET    /session   whether the API is secured, whether this browser is signed in, its CSRF token
DELETE /session   sign out: the cookie is cleared

The cookie (``jobhub_session``) is HttpOnly (no script reads it), SameSite=Strict (no other
site's page makes the browser send it) and lasts ``JOBHUB_TOKEN_TTL``. A change made with it
also needs the CSRF token, which only a page of this origin can read from ``GET /session``
(jobhub/server/auth.py checks both). A key is never stored in the browser.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub.core.exceptions import InvalidRequest, Unauthorized
from jobhub.server.auth import SESSION_COOKIE
from jobhub.server.services import json_response, read_json, services_of

__all__ = ["SessionState", "SignIn", "routes"]


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class SessionState(msgspec.Struct):
    secured: bool
    """Whether the API needs credentials at all (JOBHUB_API_KEYS)."""
    signed_in: bool
    csrf: str | None
    """Send it as ``X-CSRF-Token`` with every POST and DELETE of the signed-in console."""
    archive: bool = False
    """Whether this app keeps ended jobs in SQL (JOBHUB_ARCHIVE_URL): the console offers its
    History page. Told here so the console need not probe ``/archive/jobs`` for a 404."""


_SIGN_IN_LIMIT = 64 * 1024  # an API key, in JSON


async def sign_in(request: Request) -> Response:
    gate = services_of(request).gate
    try:
        raw = await read_json(request, _SIGN_IN_LIMIT)
        body = msgspec.json.decode(raw, type=SignIn)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f'expected {{"api_key": "..."}}: {exc}') from None
    if gate.open or gate.tokens is None:
        return _state(request, False, True, None)
    if not gate.check_key(body.api_key):
        raise Unauthorized("unknown API key")
    session = gate.tokens.session()
    response = _state(request, True, True, gate.tokens.csrf(session))
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=gate.tokens.ttl_seconds,
        path="/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )
    return response


async def session_state(request: Request) -> Response:
    gate = services_of(request).gate
    if gate.open or gate.tokens is None:
        return _state(request, False, False, None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None or not gate.tokens.valid_session(cookie):
        return _state(request, True, False, None)
    return _state(request, True, True, gate.tokens.csrf(cookie))


async def sign_out(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _state(request: Request, secured: bool, signed_in: bool, csrf: str | None) -> Response:
    archive = services_of(request).archive is not None
    body = SessionState(secured, signed_in, csrf, archive)
    # The CSRF token must not be kept by a cache shared with anyone else.
    return json_response(msgspec.json.encode(body), headers={"Cache-Control": "no-store"})


routes = [
    Route("/session", sign_in, methods=["POST"]),
    Route("/session", session_state, methods=["GET"]),
    Route("/session", sign_out, methods=["DELETE"]),
]
