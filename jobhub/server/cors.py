"""Cross-origin requests: Starlette's ``CORSMiddleware``, with refusals that say why.

A refused preflight is otherwise a bare ``text/plain`` 400 that the browser hides from the
page, and nothing on the server mentions it: whoever deploys the page sees only "CORS
error" in a console. Here it is the API's JSON error, naming the setting, and one warning in
the log with the origin.

    Middleware(CORS, allow_origins=["https://app.example.com"], ...)
"""

from __future__ import annotations

import logging

import msgspec
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["CORS"]

logger = logging.getLogger("jobhub.web")


class CORS(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # With no origin allowed, CORS has nothing to add to a request that carries no
        # Origin (every same-origin page's and non-browser client's): pass it by rather than
        # through a send wrapper that every message of a stream would go through.
        unneeded = not self.allow_origins and scope["type"] == "http"
        if unneeded and all(name != b"origin" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        origin = request_headers["origin"]
        if self.is_allowed_origin(origin=origin):
            # Starlette's body lists what failed: "Disallowed CORS method, headers".
            detail = f"{bytes(response.body).decode()} (from {origin})"
        else:
            detail = f"origin {origin} is not in JOBHUB_CORS_ORIGINS"
        logger.warning("refused a cross-origin request: %s", detail)
        body = msgspec.json.encode({"error": {"type": "CorsRefused", "detail": detail}})
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        return Response(body, 400, headers, media_type="application/json")
