"""Who may do what: API keys for the whole API, job-scoped tokens for one job.

With no API key configured the API is open (the app warns at startup). With keys:

- starting and listing jobs, and the stream of every job, need ``Authorization: Bearer
  <API key>``;
- one job's status, stream, history, cancel, pause and resume take an API key or that job's
  token, as a Bearer header, as the ``jobhub_token`` cookie (HttpOnly, scoped to the
  job's path, set when the job is started), or as ``?token=`` (EventSource cannot send
  headers).

A token is ``<job id>.<expiry>.<HMAC-SHA256 of both>``: it names one job, expires, and
cannot be forged without ``JOBHUB_TOKEN_SECRET``.

A browser console signs in once with an API key (``POST /session``, jobhub/session.py) and
gets a session: the ``jobhub_session`` cookie (HttpOnly, SameSite=Strict), a token of the
same kind for the name ``~session``, which no job id can have. It counts as an API key for
reads and streams (EventSource sends it); a request that changes something (POST, DELETE)
must also carry the session's CSRF token in ``X-CSRF-Token``, which only a page of this
origin can learn (``GET /session``).

    tokens = Tokens("secret", ttl_seconds=3600)
    token = tokens.issue("job-1")
    tokens.check(token, "job-1")        # raises Forbidden for another job or when expired
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from urllib.parse import unquote_plus

from starlette.requests import Request

from .exceptions import Forbidden, Unauthorized
from .parsing import ascii_int

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SESSION",
    "SESSION_COOKIE",
    "Gate",
    "RedactTokens",
    "Tokens",
    "redact_query",
]

COOKIE = "jobhub_token"
SESSION_COOKIE = "jobhub_session"
SESSION = "~session"
"""The name a session token is issued for: ``~`` is outside the job id alphabet."""
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Tokens:
    def __init__(self, secret: str, *, ttl_seconds: int) -> None:
        self._secret = secret.encode()
        self.ttl_seconds = ttl_seconds

    def issue(self, job_id: str, *, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + self.ttl_seconds)
        payload = f"{job_id}.{expiry}"
        return f"{payload}.{self._sign(payload)}"

    def check(self, token: str, job_id: str) -> None:
        """Raise ``Forbidden`` unless ``token`` is a valid, current token for ``job_id``."""
        parts = token.split(".")
        if len(parts) != 3 or ascii_int(parts[1]) is None:
            raise Forbidden("malformed job token")
        token_job, expiry, signature = parts
        # As bytes: compare_digest refuses str with non-ASCII characters (a crafted token).
        expected = self._sign(f"{token_job}.{expiry}").encode()
        if not hmac.compare_digest(signature.encode(), expected):
            raise Forbidden("invalid job token")
        if token_job != job_id:
            raise Forbidden(f"this token is for another job, not {job_id!r}")
        if int(expiry) < time.time():
            raise Forbidden("this job token has expired")

    def valid(self, token: str, job_id: str) -> bool:
        try:
            self.check(token, job_id)
        except Forbidden:
            return False
        return True

    def csrf(self, session: str) -> str:
        """The CSRF token that goes with a session token."""
        return self._sign(f"csrf.{session}")

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Gate:
    """Checks a request's credentials; lets everything through when no key is configured."""

    def __init__(self, api_keys: Sequence[str], tokens: Tokens | None) -> None:
        self._keys = [key.encode() for key in api_keys]
        self.tokens = tokens

    @property
    def open(self) -> bool:
        return not self._keys

    def key(self, request: Request) -> None:
        """Require an API key (or a signed-in console's session)."""
        if self.open:
            return
        credential = _bearer(request)
        if credential is None:
            if self.session(request):
                return
            raise Unauthorized("this needs an API key: Authorization: Bearer <key>")
        if not self._is_key(credential):
            raise Unauthorized("unknown API key")

    def check_key(self, key: str) -> bool:
        """Whether ``key`` is one of the API keys (for signing in)."""
        return self._is_key(key)

    def session(self, request: Request) -> bool:
        """Whether the request comes from a signed-in console: a valid session cookie and,
        for a request that changes something, its CSRF token. A session cookie with a
        wrong or missing CSRF token on such a request is a 403."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None or self.tokens is None or not self.tokens.valid(cookie, SESSION):
            return False
        if request.method not in _SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "").encode()
            if not hmac.compare_digest(given, self.tokens.csrf(cookie).encode()):
                raise Forbidden(f"a signed-in console's change needs its {CSRF_HEADER} header")
        return True

    def job(self, request: Request, job_id: str) -> None:
        """Require an API key or a token for ``job_id``."""
        if self.open:
            return
        credential = (
            _bearer(request) or request.query_params.get("token") or request.cookies.get(COOKIE)
        )
        if credential is None and self.session(request):
            return
        self._job_credential(credential, job_id)

    def jobs(self, request: Request, job_ids: Sequence[str]) -> None:
        """Require an API key, or ``?tokens=`` holding a token for each job, in order."""
        if self.open:
            return
        credential = _bearer(request)
        if credential is not None and self._is_key(credential):
            return
        if credential is None and "tokens" not in request.query_params and self.session(request):
            return
        tokens = request.query_params.get("tokens", "").split(",")
        if len(tokens) != len(job_ids):
            raise Unauthorized("this needs an API key, or ?tokens= with one token per job")
        for token, job_id in zip(tokens, job_ids, strict=True):
            self._job_credential(token or None, job_id)

    def _job_credential(self, credential: str | None, job_id: str) -> None:
        if credential is None:
            raise Unauthorized(f"this needs an API key or a token for job {job_id!r}")
        if self._is_key(credential):
            return
        if self.tokens is None:
            raise Forbidden("job tokens are not enabled here")
        self.tokens.check(credential, job_id)

    def _is_key(self, credential: str) -> bool:
        # Compared with every key in constant time, so timing tells nothing of a key.
        given = credential.encode()
        return any([hmac.compare_digest(given, key) for key in self._keys])


class RedactTokens(logging.Filter):
    """Hides the values of the ``token`` and ``tokens`` query parameters in access-log lines:
    a token in a URL (EventSource's only way) must not end up in logs.

    A parameter is known by its name as the app decodes it, so ``?%74oken=`` (which the gate
    reads as ``token``) is hidden too: ``/jobs/j?%74oken=[redacted]``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


_SECRET_PARAMETERS = frozenset({"token", "tokens"})


def redact_query(target: str) -> str:
    """``target`` (a path and query, as in an access log) with the values of ``token`` and
    ``tokens`` parameters replaced by ``[redacted]``, whatever their names' encoding.

    Split as Starlette splits a query (on ``&``, then the first ``=``), and each name decoded
    as it decodes them (``+`` and percent escapes), so what the gate may read as a token is
    what is hidden here.
    """
    path, mark, query = target.partition("?")
    if not mark:
        return target
    fields = query.split("&")
    for i, field in enumerate(fields):
        name = field.partition("=")[0]
        if unquote_plus(name) in _SECRET_PARAMETERS:
            fields[i] = f"{name}=[redacted]"
    return f"{path}?{'&'.join(fields)}"


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
