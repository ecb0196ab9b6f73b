"""What the HTTP endpoints share: the services the app builds, and request helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from jobhub.archive.reads import ArchiveReads
from jobhub.core.exceptions import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from jobhub.core.metrics import WebMetrics
from jobhub.core.parsing import ascii_int, utf8_error
from jobhub.core.settings import Settings
from jobhub.core.snapshot import JOB_ID
from jobhub.lifecycle.batches import BatchLifecycle
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.server.auth import Gate
from jobhub.server.streaming.hub import Hub
from jobhub.server.streaming.sse import Streams
from jobhub.store.registry import Registry
from jobhub.store.store import Store
from jobhub.webhooks.deliveries import DeliveryLog

__all__ = [
    "END",
    "JOB_ID_PATTERN",
    "MAX_NESTING",
    "Services",
    "decode_body",
    "job_id_of",
    "json_response",
    "query_of",
    "read_json",
    "services_of",
    "too_deep",
    "valid_id",
]

END = r"(?![\s\S])"
"""The end of a pattern: no character follows. Python's ``$`` (what msgspec's patterns use,
with ``re.search``) also matches before a final newline, so ``"abc\n"`` would pass for an id;
this reads the same in Python and in JSON Schema's (ECMAScript) dialect."""

JOB_ID_PATTERN = "^" + JOB_ID + END
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
    batches: BatchLifecycle
    archive: ArchiveReads | None = None
    """The archive's reads (``JOBHUB_ARCHIVE_URL``); None where there is no archive."""


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


async def read_json(request: Request, limit: int) -> bytes:
    """A request's JSON body, at most ``limit`` bytes, as sent (``PayloadTooLarge`` past it).

    It must say it is JSON (``Content-Type: application/json``, or a ``+json`` type) and be
    sent as is (no ``Content-Encoding``), else ``UnsupportedMediaType``: a page of any other
    site may send a form or ``text/plain`` body to this origin without the browser asking
    first (no CORS preflight), and it must not start jobs that way.
    """
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        shown = repr(media) if media else "none"
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: application/json (got {shown})"
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted: send it as is")
    declared = ascii_int(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"request body over {limit} bytes")
    except ClientDisconnect:
        # Nobody is left to answer; an error of the API's own keeps a traceback out of the log.
        raise InvalidRequest("the client went away before it sent the whole body") from None
    # Checked whole, before decoding: the offset then counts from the body's start, where
    # the JSON decoder's own error would count from the start of the string holding it.
    why = utf8_error(bytes(body))
    if why is not None:
        raise InvalidRequest(f"request body is not valid UTF-8: {why}")
    return bytes(body)


def query_of(request: Request) -> dict[str, str]:
    """The query parameters, each given once: a repeated one is ``InvalidRequest`` rather
    than silently its last value (``?status=a&status=b`` is not "a or b")."""
    params = request.query_params
    found: dict[str, str] = {}
    for name, value in params.multi_items():
        if name in found:
            count = len(params.getlist(name))
            raise InvalidRequest(f"query parameter {name!r} is given {count} times: give it once")
        found[name] = value
    return found


T = TypeVar("T")

MAX_NESTING = 64
"""How deep lists and dicts may nest in a job's ``args`` and ``kwargs``."""


def decode_body(body: bytes, model: type[T]) -> T:
    """A request's JSON body as ``model``; anything wrong with it is an ``InvalidRequest``
    (400) that says what, never a 500."""
    try:
        return msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        # Also a "\ud800" escape: msgspec refuses a lone surrogate, which would decode to a
        # str that cannot be encoded again (for Redis, for the worker's result).
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        # msgspec decodes nesting recursively; ~1000 levels exhaust Python's stack.
        raise InvalidRequest(f"request body nests deeper than {MAX_NESTING} levels") from None


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
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
