"""The ``jobhub`` command's exit statuses, and the one line that explains each error.

A script tells the outcomes apart by status alone (the job failed, was canceled, did not end
in time; the API refused; the app could not be reached or did not answer), so each has its
own, listed in ``EXIT_CODES`` as the README lists them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

import httpx

from jobhub.core.exceptions import ApiError
from jobhub.core.snapshot import Status

__all__ = [
    "EXIT",
    "EXIT_API",
    "EXIT_CANCELED",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_ANSWER",
    "EXIT_PIPE",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "drop_stdout",
    "explain",
    "is_stdout_failure",
]

EXIT_FAILED, EXIT_CANCELED, EXIT_TIMEOUT, EXIT_API = 3, 4, 5, 6
EXIT_UNREACHABLE, EXIT_NO_ANSWER, EXIT_INTERRUPTED, EXIT_PIPE = 7, 8, 130, 141
EXIT_CODES = {
    0: "the job finished (or was submitted, or is still at work for `status`)",
    1: "`jobhub dev` could not start the stack, or a part of it died; stdout could not be "
    "written; or an unexpected error",
    2: "bad usage: an unknown option, a malformed --kwarg or --url",
    EXIT_FAILED: "the job failed",
    EXIT_CANCELED: "the job was canceled",
    EXIT_TIMEOUT: "the job did not end within --timeout (it goes on)",
    EXIT_API: "the API refused the request (unknown job or function, no access, ...)",
    EXIT_UNREACHABLE: "cannot connect to the app at --url / JOBHUB_URL",
    EXIT_NO_ANSWER: "the app did not answer within --request-timeout",
    EXIT_INTERRUPTED: "Ctrl-C: stopped following; a job started goes on",
    EXIT_PIPE: "what read the output stopped reading (`| head`); the job goes on",
}
"""Every exit status of the ``jobhub`` command, as the README lists them."""

EXIT = {Status.FINISHED: 0, Status.FAILED: EXIT_FAILED, Status.CANCELED: EXIT_CANCELED}
"""The exit status of each final status of a job."""


def explain(
    exc: Exception, url: str, request_timeout: float, api_key: str | None = None
) -> tuple[int, str]:
    """The exit status and the one line that say what went wrong, for the errors a user
    can meet (an unexpected one says so, and ``--debug`` shows its traceback)."""
    if isinstance(exc, ApiError):
        return EXIT_API, _refusal(exc, url, api_key)
    if isinstance(exc, httpx.InvalidURL):  # (not an httpx.HTTPError)
        return 2, f"--url {url!r} is not a usable http:// or https:// URL ({exc})"
    if not isinstance(exc, httpx.HTTPError):
        return 1, f"unexpected {type(exc).__name__}: {exc} (--debug shows where)"
    hint = "is it running? Point --url or JOBHUB_URL at it"
    if isinstance(exc, httpx.TimeoutException):
        wait = request_timeout
        return EXIT_NO_ANSWER, f"{url} did not answer within {wait:g} s (--request-timeout)"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return 2, f"--url {url!r} is not an http:// or https:// URL ({exc})"
    if isinstance(exc, httpx.ConnectError):
        return EXIT_UNREACHABLE, f"cannot connect to {url} ({_reason(exc)}): {hint}"
    return EXIT_UNREACHABLE, f"lost the connection to {url} ({_reason(exc)}): {hint}"


def _refusal(exc: ApiError, url: str, api_key: str | None) -> str:
    """The API's refusal of the credentials in the command's own terms. The server words it
    for any HTTP client ("Authorization: Bearer <key>"; a key it does not know is tried as a
    job token, so "malformed job token"), but the user of the command gave ``--api-key``
    or did not."""
    if exc.status_code == 401 and api_key is None:
        return f"the app at {url} needs an API key: pass --api-key KEY or set JOBHUB_API_KEY"
    if api_key is None or exc.status_code not in (401, 403):
        return str(exc)
    if exc.status_code == 401 or exc.detail.startswith(_UNKNOWN_CREDENTIAL):
        return (
            f"the app at {url} refused the API key given by --api-key or JOBHUB_API_KEY: "
            "it is not one of the app's JOBHUB_API_KEYS"
        )
    # A key or token the app knows, which does not reach this job or action (a scoped
    # token): the server's words say which.
    return (
        f"the app at {url} does not let the key or token given by --api-key or "
        f"JOBHUB_API_KEY do this: {exc}"
    )


_UNKNOWN_CREDENTIAL = ("malformed ", "invalid ")
"""How the server's refusal of a credential it cannot read begins: a key it does not know is
tried as a token, and met as a malformed or invalid one."""


def _reason(exc: BaseException) -> str:
    # httpx wraps the socket error; its innermost cause says it best ("Connection refused").
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)  # "Connection refused", not asyncio's own wording
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # a failed name lookup: "Name or service not known"
    return str(exc) or type(exc).__name__


def is_stdout_failure(exc: OSError) -> bool:
    """An error of writing stdout, not one of the network (httpx wraps those in its own)."""
    return exc.errno in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT)


def drop_stdout() -> None:
    """Points stdout at /dev/null, so that flushing it at exit cannot fail again."""
    if sys.stdout is not None:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
