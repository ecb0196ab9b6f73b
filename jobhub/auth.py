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

    tokens = Tokens("secret", ttl_seconds=3600)
    token = tokens.issue("job-1")
    tokens.check(token, "job-1")        # raises Forbidden for another job or when expired
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Sequence

from starlette.requests import Request

from .exceptions import Forbidden, Unauthorized

__all__ = ["COOKIE", "Gate", "RedactTokens", "Tokens"]

COOKIE = "jobhub_token"


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
        if len(parts) != 3 or not parts[1].isdigit():
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
        """Require an API key."""
        if self.open:
            return
        credential = _bearer(request)
        if credential is None:
            raise Unauthorized("this needs an API key: Authorization: Bearer <key>")
        if not self._is_key(credential):
            raise Unauthorized("unknown API key")

    def job(self, request: Request, job_id: str) -> None:
        """Require an API key or a token for ``job_id``."""
        if self.open:
            return
        credential = (
            _bearer(request) or request.query_params.get("token") or request.cookies.get(COOKIE)
        )
        self._job_credential(credential, job_id)

    def jobs(self, request: Request, job_ids: Sequence[str]) -> None:
        """Require an API key, or ``?tokens=`` holding a token for each job, in order."""
        if self.open:
            return
        credential = _bearer(request)
        if credential is not None and self._is_key(credential):
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
    """Hides ``token=`` and ``tokens=`` query values in access-log lines: a token in a URL
    (EventSource's only way) must not end up in logs."""

    _PATTERN = re.compile(r"\b(tokens?)=[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PATTERN.sub(r"\1=[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
