"""How the client speaks to the API: the base URL it accepts, the path of a job (its id
checked as the API checks it), and an answer turned into a ``Snapshot`` or an ``ApiError``."""

from __future__ import annotations

import re
from typing import NoReturn

import httpx

from jobhub.core.exceptions import ApiError
from jobhub.core.snapshot import JOB_ID, Snapshot, decode

__all__ = ["checked_url", "job_path", "raise_error", "snapshot_of"]


def job_path(job_id: str, rest: str = "") -> str:
    """The path of a job's resource; an id that is no job id (``..``, ``a/b``) would name
    another resource, so it is refused here as the API refuses it."""
    if re.fullmatch(JOB_ID, job_id) is None:
        raise ApiError(400, "InvalidRequest", f"invalid job id {job_id!r}: expected {JOB_ID}")
    return f"/jobs/{job_id}{rest}"


def checked_url(base_url: str) -> httpx.URL:
    """``base_url`` parsed, or ``httpx.InvalidURL`` now rather than at the first request."""
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise httpx.InvalidURL(f"expected http://host[:port] or https://..., got {base_url!r}")
    if url.port is not None and not 0 < url.port < 65536:
        raise httpx.InvalidURL(f"port {url.port} is not between 1 and 65535")
    return url


def snapshot_of(response: httpx.Response) -> Snapshot:
    if response.is_error:
        raise_error(response)
    return decode(response.content)


def raise_error(response: httpx.Response) -> NoReturn:
    try:
        error = response.json()["error"]
        error_type, detail = str(error["type"]), str(error["detail"])
    except (ValueError, KeyError, TypeError):
        error_type, detail = "HTTPError", f"HTTP {response.status_code}"
    raise ApiError(response.status_code, error_type, detail)
