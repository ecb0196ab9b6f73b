"""What the HTTP endpoints share: the services the app builds, and request helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from .auth import Gate
from .exceptions import InvalidRequest
from .hub import Hub
from .lifecycle import Lifecycle
from .metrics import WebMetrics
from .registry import Registry
from .settings import Settings
from .sse import Streams
from .store import Store
from .webhooks import DeliveryLog

__all__ = [
    "END",
    "JOB_ID_PATTERN",
    "Services",
    "job_id_of",
    "json_response",
    "services_of",
    "valid_id",
]

END = r"(?![\s\S])"
"""The end of a pattern: no character follows. Python's ``$`` (what msgspec's patterns use,
with ``re.search``) also matches before a final newline, so ``"abc\n"`` would pass for an id;
this reads the same in Python and in JSON Schema's (ECMAScript) dialect."""

JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}" + END
_JOB_ID = re.compile(JOB_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes need, built once by the app's lifespan."""

    settings: Settings
    metrics: WebMetrics
    gate: Gate
    store: Store
    hub: Hub
    streams: Streams
    lifecycle: Lifecycle
    registry: Registry
    deliveries: DeliveryLog


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def job_id_of(request: Request) -> str:
    return valid_id(request.path_params["job_id"])


def valid_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise InvalidRequest(
            f"invalid job id {job_id!r}: expected 1 to 64 letters, digits, '_' or '-'"
        )
    return job_id


def json_response(
    data: bytes, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(data, status_code, headers, media_type="application/json")
