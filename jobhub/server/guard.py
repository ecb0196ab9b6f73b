"""An ASGI middleware that answers 400 to a request whose path, query or headers are not UTF-8.

    Starlette(middleware=[Middleware(RequireUtf8)], ...)

Servers hand the app these as bytes, and Starlette decodes them leniently: a percent-encoded
``%ff`` in the path or query becomes U+FFFD, a header value is read as Latin-1. A handler
then works on text the client never sent (a job filter of U+FFFD, a token of mojibake)
instead of refusing it. Checked once here, every route can take its strings as they come.
The body is the route's to check (it is read later, and only by the routes that take one).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from jobhub.core.exceptions import InvalidRequest
from jobhub.core.parsing import utf8_error

__all__ = ["RequireUtf8"]


class RequireUtf8:
    """Refuses, with the API's JSON error, any HTTP request carrying bytes that are not UTF-8
    in its path or query (after percent-decoding) or in a header value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _problem(scope)
            if problem is not None:
                error = InvalidRequest(problem)
                await JSONResponse(error.to_body(), error.status_code)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _problem(scope: Scope) -> str | None:
    """What in the request is not UTF-8, in words, or None."""
    # raw_path is what the client sent; scope["path"] has been decoded with replacement.
    raw_path: bytes | None = scope.get("raw_path")
    path = raw_path if raw_path is not None else scope["path"].encode("utf-8", "surrogatepass")
    for where, raw in (("the path", path), ("the query string", scope["query_string"])):
        if b"%" in raw or not raw.isascii():
            why = utf8_error(unquote_to_bytes(raw))
            if why is not None:
                return f"{where} is not UTF-8 once percent-decoded ({why})"
    for name, value in scope["headers"]:
        why = utf8_error(value)
        if why is not None:
            return f"the value of header {name.decode('latin-1')!r} is not UTF-8 ({why})"
    return None
