"""``GET /healthz``: is this web process up, and does it reach Redis?

For load balancers and orchestrators (a 503 takes the process out of rotation) and for
``jobhub dev``'s readiness probe. It needs no credentials and says nothing about any job:

    {"status": "ok", "redis": "ok", "functions": 4}            200
    {"status": "unavailable", "redis": "<the error>"}          503, Retry-After: 1

``functions`` counts the job functions live workers offer; 0 means no worker is up yet.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from jobhub.server.services import json_response, services_of

__all__ = ["Health", "healthz"]


class Health(msgspec.Struct):
    status: Literal["ok", "unavailable"]
    redis: str
    """``ok``, or why Redis cannot be reached."""
    functions: int | msgspec.UnsetType = msgspec.UNSET
    """How many job functions live workers offer; absent when Redis is out of reach."""


async def healthz(request: Request) -> Response:
    registry = services_of(request).registry
    try:
        functions = len(await registry.live_functions())
    except RedisError as exc:
        down = Health("unavailable", str(exc) or type(exc).__name__)
        return json_response(msgspec.json.encode(down), 503, {"Retry-After": "1"})
    up = Health("ok", "ok", functions)
    # A probe must see the state now, never a cached answer from before an outage.
    return json_response(msgspec.json.encode(up), headers={"Cache-Control": "no-store"})
