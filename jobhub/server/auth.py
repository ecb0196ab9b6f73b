"""Who may do what: API keys for the whole API, job-scoped tokens for one job.

With no API key configured the API is open (the app warns at startup). With keys:

- starting and listing jobs, the stream of every job, and ``/metrics`` need
  ``Authorization: Bearer <API key>``;
- one job's status, stream, history, cancel, pause and resume take an API key or that job's
  token, as a Bearer header or as ``?token=`` (EventSource cannot send headers). The
  ``jobhub_token`` cookie (HttpOnly, scoped to the job's path, set when the job is started)
  opens reads only: a browser sends a cookie with any other site's form too, so a cookie
  alone never authorizes a change (POST, DELETE).

A token is ``<job id>.<instance>.<expiry>.<HMAC-SHA256 of the rest>``: it names one job,
expires, and cannot be forged without ``JOBHUB_TOKEN_SECRET``. The instance is the job's
``created_at`` (its digits and letters): a job deleted (or expired) and created again under
the same client-chosen id is another instance, which the old token does not open. Checking
it costs one Redis read, and only for requests authorized by a job token.

A browser console signs in once with an API key (``POST /session``, jobhub/server/session.py) and
gets a session: the ``jobhub_session`` cookie (HttpOnly, SameSite=Strict), a token of the
form ``~session.<expiry>.<HMAC>`` (``~`` is outside the job id alphabet). It counts as an
API key for reads and streams (EventSource sends it); a request that changes something
(POST, DELETE) must also carry the session's CSRF token in ``X-CSRF-Token``, which only a
page of this origin can learn (``GET /session``).

A scoped token (``~scope.<grant>.<HMAC>``, jobhub/server/scopes.py) opens the jobs of some
tags, jobs or batches for some actions: ``job``, ``jobs``, ``tag``, ``starter`` and ``batch``
check it. ``JOBHUB_TOKEN_SECRET`` may hold two secrets, ``new,old``: every token is signed
with the first and accepted under either, so a rotation logs no one out.

    tokens = Tokens("secret", ttl_seconds=3600)
    token = tokens.issue("job-1", instance_of(snapshot_json))
    tokens.verify(token, "job-1")   # its instance; Forbidden for another job or when expired
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import unquote_plus

import msgspec
from starlette.requests import Request

from jobhub.core.exceptions import Forbidden, JobNotFound, Unauthorized
from jobhub.core.parsing import ascii_int
from jobhub.server.scopes import Grant, ScopeChecks, Scopes, action_of, in_scope, is_scoped
from jobhub.server.scopes import bearer as _bearer

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SESSION",
    "SESSION_COOKIE",
    "Gate",
    "RedactTokens",
    "Tokens",
    "instance_of",
    "redact_query",
]

COOKIE = "jobhub_token"
SESSION_COOKIE = "jobhub_session"
SESSION = "~session"
"""The name a session token is issued for: ``~`` is outside the job id alphabet."""
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ReadSnapshots = Callable[[Sequence[str]], Awaitable[Sequence[bytes | None]]]
"""Reads the latest snapshot JSON of each job, in one round trip (``Store.get_many``)."""


class _Created(msgspec.Struct):
    created_at: str


_decode_created = msgspec.json.Decoder(_Created).decode
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
_INSTANCE = re.compile(r"[0-9A-Za-z]{1,64}")


def instance_of(snapshot: bytes) -> str:
    """The instance of the job a snapshot (JSON) is of, as a token names it: the digits and
    letters of its ``created_at``, set once when the job is created and never written again
    (``2026-11-22T05:08:58.123456Z`` -> ``20261122T050858123456Z``)."""
    return _NOT_ALNUM.sub("", _decode_created(snapshot).created_at)


class Tokens:
    """Signs with the first of ``secret``'s comma-separated secrets and accepts what any of
    them signed: ``JOBHUB_TOKEN_SECRET=new,old`` rotates the secret without logging anyone
    out (job tokens, sessions and scoped tokens alike); drop ``old`` once its tokens expired."""

    def __init__(self, secret: str, *, ttl_seconds: int) -> None:
        self._secrets = [part.strip().encode() for part in secret.split(",") if part.strip()]
        if not self._secrets:
            raise ValueError("a token secret is needed")
        self.ttl_seconds = ttl_seconds

    def issue(self, job_id: str, instance: str, *, now: float | None = None) -> str:
        """A token for the job ``job_id`` as long as it is ``instance`` (see ``instance_of``)."""
        if not _INSTANCE.fullmatch(instance):
            raise ValueError(f"not a job instance: {instance!r}")
        payload = f"{job_id}.{instance}.{self._expiry(now)}"
        return f"{payload}.{self.sign('job.' + payload)}"

    def verify(self, token: str, job_id: str) -> str:
        """The instance of ``job_id`` that ``token`` opens; ``Forbidden`` unless it is a
        valid, current token for ``job_id``. The caller compares the instance with the job's:
        the token opens no other."""
        parts = token.split(".")
        if len(parts) != 4 or ascii_int(parts[2]) is None or not _INSTANCE.fullmatch(parts[1]):
            raise Forbidden("malformed job token")
        token_job, token_instance, expiry, signature = parts
        # As bytes: compare_digest refuses str with non-ASCII characters (a crafted token).
        if not self.signed(f"job.{token_job}.{token_instance}.{expiry}", signature):
            raise Forbidden("invalid job token")
        if token_job != job_id:
            raise Forbidden(f"this token is for another job, not {job_id!r}")
        if int(expiry) < time.time():
            raise Forbidden("this job token has expired")
        return token_instance

    def session(self, *, now: float | None = None) -> str:
        """A signed-in console's session token."""
        payload = f"{SESSION}.{self._expiry(now)}"
        return f"{payload}.{self.sign(payload)}"

    def valid_session(self, token: str) -> bool:
        """Whether ``token`` is a session token of ours, not expired."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != SESSION or ascii_int(parts[1]) is None:
            return False
        return self.signed(f"{SESSION}.{parts[1]}", parts[2]) and int(parts[1]) >= time.time()

    def csrf(self, session: str) -> str:
        """The CSRF token that goes with a session token."""
        return self.sign(f"csrf.{session}")

    def signed(self, payload: str, signature: str) -> bool:
        """Whether ``signature`` is ``payload``'s under any of the secrets."""
        # As bytes: compare_digest refuses str with non-ASCII characters (a crafted token).
        given = signature.encode()
        return any([hmac.compare_digest(given, self._sign(payload, s)) for s in self._secrets])

    def _expiry(self, now: float | None) -> int:
        return int((time.time() if now is None else now) + self.ttl_seconds)

    def sign(self, payload: str) -> str:
        """``payload``'s signature under the current secret."""
        return self._sign(payload, self._secrets[0]).decode()

    @staticmethod
    def _sign(payload: str, secret: bytes) -> bytes:
        digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")


class Gate(ScopeChecks):
    """Checks a request's credentials; lets everything through when no key is configured.
    Scoped tokens' own checks (``tag``, ``starter``, ``batch``) are ``ScopeChecks``'."""

    def __init__(
        self,
        api_keys: Sequence[str],
        tokens: Tokens | None,
        read_snapshots: ReadSnapshots,
        scopes: Scopes | None = None,
    ) -> None:
        self._keys = [key.encode() for key in api_keys]
        self.tokens = tokens
        self._read = read_snapshots
        self.scopes = scopes

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
        if is_scoped(credential):
            raise Forbidden("a scoped token opens only the jobs of its scope, not this")
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
        if cookie is None or self.tokens is None or not self.tokens.valid_session(cookie):
            return False
        given = request.headers.get(CSRF_HEADER, "")
        if request.method not in _SAFE_METHODS and not self.tokens.signed(f"csrf.{cookie}", given):
            raise Forbidden(f"a signed-in console's change needs its {CSRF_HEADER} header")
        return True

    async def job(self, request: Request, job_id: str) -> Grant | None:
        """Require an API key, a signed-in console's session, or a token for this instance
        of ``job_id``: as a Bearer header or ``?token=``, or for a read as the job's cookie.
        A job token for a job that does not exist is ``JobNotFound``. Returns a scoped
        token's grant (for ``held``), else None."""
        if self.open:
            return None
        credential = _bearer(request) or request.query_params.get("token")
        if credential is None:
            # The session first: it opens every job, so a stale job cookie beside it (of a
            # job since deleted and created again) does not shut the console out.
            if self.session(request):
                return None
            if request.method in _SAFE_METHODS:
                credential = request.cookies.get(COOKIE)
            elif COOKIE in request.cookies:
                # A browser attaches the cookie to a form any other site submits to us; a
                # change needs what only the job's holder can send.
                raise Forbidden(
                    f"the {COOKIE} cookie opens the job for reads only: a change needs the "
                    "token as Authorization: Bearer <token> (or ?token=), or an API key"
                )
        if credential is None:
            raise Unauthorized(f"this needs an API key or a token for job {job_id!r}")
        if self._is_key(credential):
            return None
        if is_scoped(credential):
            grant = await self.grant(credential, action_of(request))
            [snapshot] = await self._read([job_id])
            in_scope(grant, [job_id], [snapshot])
            if snapshot is None:
                raise JobNotFound(job_id)
            return grant
        claimed = self._token(credential, job_id)
        [snapshot] = await self._read([job_id])
        if snapshot is None:
            raise JobNotFound(job_id)
        _same_instance(claimed, snapshot, job_id)
        return None

    async def jobs(self, request: Request, job_ids: Sequence[str]) -> Grant | None:
        """Require an API key, or ``?tokens=`` holding a token for each job, in order. A job
        that does not exist passes (the stream tells that it is gone); one that does must be
        the instance its token names. Returns a scoped token's grant, else None."""
        if self.open:
            return None
        scoped = _bearer(request) or request.query_params.get("token")
        if scoped is not None and is_scoped(scoped):
            grant = await self.grant(scoped, "read")
            in_scope(grant, job_ids, await self._read(job_ids))
            return grant
        credential = _bearer(request)
        if credential is not None and self._is_key(credential):
            return None
        if credential is None and "tokens" not in request.query_params and self.session(request):
            return None
        tokens = request.query_params.get("tokens", "").split(",")
        if len(tokens) != len(job_ids):
            raise Unauthorized("this needs an API key, or ?tokens= with one token per job")
        claims: dict[str, str] = {}
        for token, job_id in zip(tokens, job_ids, strict=True):
            if not token:
                raise Unauthorized(f"this needs an API key or a token for job {job_id!r}")
            if not self._is_key(token):
                claims[job_id] = self._token(token, job_id)
        if claims:
            snapshots = await self._read(list(claims))
            for (job_id, claimed), snapshot in zip(claims.items(), snapshots, strict=True):
                if snapshot is not None:
                    _same_instance(claimed, snapshot, job_id)
        return None

    async def claim(self, grant: Grant | None, job_ids: Sequence[str]) -> None:
        """Before a scoped token starts jobs under ids its client chose: ``Forbidden`` where
        one names a job outside its scope, live or only in the archive (whose row a new
        job under that id would replace once it ended). An API key (``grant`` None) may."""
        if grant is None or not job_ids:
            return
        outside = [
            job_id
            for job_id, data in zip(job_ids, await self._read(job_ids), strict=True)
            if data is not None and not grant.covers(job_id, data)
        ]
        if outside:
            raise Forbidden(
                f"job id {', '.join(outside)} is already used outside this token's scope"
            )

    def _token(self, credential: str, job_id: str) -> str:
        if self.tokens is None:
            raise Forbidden("job tokens are not enabled here")
        return self.tokens.verify(credential, job_id)

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


def _same_instance(claimed: str, snapshot: bytes, job_id: str) -> None:
    if not hmac.compare_digest(claimed.encode(), instance_of(snapshot).encode()):
        raise Forbidden(
            f"this token is for an earlier job that had the id {job_id!r}, not for this one"
        )
