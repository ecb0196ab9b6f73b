"""Scoped tokens: a credential for a browser that opens the jobs of one user, not all.

A backend holding an API key mints one (``POST /tokens``) for its signed-in user::

    {"scope": {"tags": ["user:42"], "jobs": [], "batches": []},
     "actions": ["read", "start"], "ttl_seconds": 900}

The token opens exactly the jobs its scope names, those with a tag it holds (any one of
the job's tags) and those of a batch it names, and only for its actions: ``read`` (status,
stream, output, history, detail, and the lists and streams of its tags), ``start``
(``POST /jobs``: the job gets all of the token's tags, so it is in the token's scope and in
no one else's), ``cancel``, ``pause`` (pause and resume). Anything else (every job's list or
stream, another tag, ``DELETE``, retry, the console's stats) is refused with a 403.

A scoped token is ``~scope.<payload>.<HMAC>``: the payload is the grant as base64url JSON,
signed like every other token (``Tokens``), so checking it needs no lookup but one: whether
it was revoked. ``DELETE /tokens/{token_id}`` marks it in Redis until it would have expired,
and every web process reads that mark on each request the token makes, so a revocation holds
everywhere at once, at the cost of one ``EXISTS`` per request made with a scoped token.
``token_id`` carries the token's expiry (``t<expiry>-<random>``), which is how long the mark
needs to live.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol

import msgspec
from redis.asyncio import Redis
from starlette.requests import Request

from jobhub.core import keys
from jobhub.core.exceptions import Forbidden, InvalidRequest
from jobhub.core.parsing import ascii_int
from jobhub.core.snapshot import JOB_ID

__all__ = [
    "MAX_TAGS",
    "MAX_TOKEN_TTL",
    "SCOPED",
    "TAG_PATTERN",
    "Action",
    "Grant",
    "Scope",
    "ScopeChecks",
    "Scopes",
    "Tag",
    "Tags",
    "TokenGrant",
    "TokenRequest",
    "action_of",
    "bearer",
    "expiry_of",
    "forced_tags",
    "in_scope",
    "is_scoped",
    "valid_tag",
]

SCOPED = "~scope"
"""What a scoped token starts with: ``~`` is outside the job id alphabet."""

TAG_PATTERN = r"^[A-Za-z0-9:._-]{1,64}(?![\s\S])"
"""A tag: 1-64 of ``[A-Za-z0-9:._-]``, so that it goes into Redis keys, channels and URLs
as it is (``user:42``, ``project.7``)."""
MAX_TAGS = 10
MAX_SCOPE_ITEMS = 100
MAX_TOKEN_TTL = 7 * 24 * 3600

Tag = Annotated[str, msgspec.Meta(pattern=TAG_PATTERN)]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)]
_Id = Annotated[str, msgspec.Meta(pattern="^" + JOB_ID + r"(?![\s\S])")]
_Ids = Annotated[list[_Id], msgspec.Meta(max_length=MAX_SCOPE_ITEMS)]
Action = Literal["read", "start", "cancel", "pause"]


class Scope(msgspec.Struct, forbid_unknown_fields=True):
    """What a scoped token opens: jobs by tag, by id, or by batch."""

    tags: Tags = []
    jobs: _Ids = []
    batches: _Ids = []


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /tokens``."""

    scope: Scope
    actions: Annotated[list[Action], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["read"]
    )
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKEN_TTL)] = 900


class TokenGrant(msgspec.Struct):
    """Answer of ``POST /tokens``."""

    token: str
    expires_at: str
    """ISO 8601, UTC."""
    token_id: str
    """What ``DELETE /tokens/{token_id}`` revokes it by."""


class Grant(msgspec.Struct, array_like=True, frozen=True):
    """What a scoped token carries, signed."""

    token_id: str
    expiry: int
    tags: list[str]
    jobs: list[str]
    batches: list[str]
    actions: list[str]

    def allows(self, action: str) -> bool:
        return action in self.actions

    def covers(self, job_id: str, snapshot: bytes | None) -> bool:
        """Whether the job (its snapshot JSON, if it exists) is in scope."""
        if job_id in self.jobs:
            return True
        if snapshot is None:
            return False
        held = _decode_held(snapshot)
        if held.batch_id is not None and held.batch_id in self.batches:
            return True
        return not set(held.tags).isdisjoint(self.tags)


class _Held(msgspec.Struct):
    # ``batch_id`` is read if the snapshot has one (jobs of a batch), else None.
    tags: list[str] = []
    batch_id: str | None = None


_decode_held = msgspec.json.Decoder(_Held).decode
_decode_grant = msgspec.json.Decoder(Grant).decode
_encode = msgspec.json.encode


_TAG = re.compile(TAG_PATTERN)


def valid_tag(raw: str) -> str:
    """``raw`` if it is a tag (``TAG_PATTERN``), else ``InvalidRequest``."""
    if not _TAG.match(raw):
        raise InvalidRequest(f"a tag is 1 to 64 of A-Z a-z 0-9 : . _ -, got {raw[:80]!r}")
    return raw


def is_scoped(credential: str) -> bool:
    return credential.startswith(SCOPED + ".")


def expiry_of(token_id: str) -> int | None:
    """The expiry a token id carries (``t<expiry>-<random>``), None if it is none of ours."""
    head, dash, rest = token_id.partition("-")
    if not dash or not rest or not head.startswith("t"):
        return None
    return ascii_int(head[1:])


def action_of(request: Request) -> Action | None:
    """The action a request on one job is: reads are ``read``; a change names its action in
    its last path segment (``/cancel``, ``/pause``, ``/resume``). None for any other change
    (``DELETE``, retry): no scoped token may make it."""
    if request.method in ("GET", "HEAD"):
        return "read"
    last = request.url.path.rstrip("/").rpartition("/")[2]
    if request.method == "POST" and last == "cancel":
        return "cancel"
    if request.method == "POST" and last in ("pause", "resume"):
        return "pause"
    return None


def forced_tags(grant: Grant | None, asked: list[str]) -> list[str]:
    """The tags a new job gets: those asked for, or with a scoped token all of the token's
    (a browser can never start a job outside its own scope, nor put one in another's)."""
    if grant is None:
        return asked
    outside = sorted(set(asked) - set(grant.tags))
    if outside:
        raise Forbidden(f"this token cannot tag jobs with {', '.join(outside)}")
    return list(grant.tags)


class Scopes:
    """Mints, reads and revokes scoped tokens; ``sign`` and ``signed`` are ``Tokens``'."""

    def __init__(self, tokens: _Signer, redis: Redis) -> None:
        self._tokens = tokens
        self._redis = redis

    def issue(
        self, request: TokenRequest, *, now: float | None = None, within: Grant | None = None
    ) -> TokenGrant:
        """A token for ``request``; ``within``: the scoped token it is handed to (a batch's
        token for the batch it started), whose id and expiry it takes, so that it is revoked
        with that token and outlives it in nothing."""
        scope = request.scope
        if not (scope.tags or scope.jobs or scope.batches):
            raise InvalidRequest("a token's scope names at least one tag, job or batch")
        if "start" in request.actions and not scope.tags:
            # The job it starts gets its tags: without one, the job would be outside its scope.
            raise InvalidRequest("a token that may start jobs needs tags in its scope")
        expiry = int((time.time() if now is None else now) + request.ttl_seconds)
        token_id = f"t{expiry}-{secrets.token_urlsafe(12)}"
        if within is not None:
            expiry, token_id = min(expiry, within.expiry), within.token_id
        grant = Grant(
            token_id,
            expiry,
            list(dict.fromkeys(scope.tags)),
            list(dict.fromkeys(scope.jobs)),
            list(dict.fromkeys(scope.batches)),
            list(dict.fromkeys(request.actions)),
        )
        payload = base64.urlsafe_b64encode(_encode(grant)).rstrip(b"=").decode()
        token = f"{SCOPED}.{payload}.{self._tokens.sign(f'{SCOPED}.{payload}')}"
        expires_at = datetime.fromtimestamp(expiry, UTC).isoformat().replace("+00:00", "Z")
        return TokenGrant(token, expires_at, token_id)

    async def open(self, token: str) -> Grant:
        """The grant ``token`` carries; ``Forbidden`` if it is forged, expired or revoked."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != SCOPED:
            raise Forbidden("malformed scoped token")
        if not self._tokens.signed(f"{SCOPED}.{parts[1]}", parts[2]):
            raise Forbidden("invalid scoped token")
        try:
            grant = _decode_grant(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise Forbidden("malformed scoped token") from None
        if grant.expiry < time.time():
            raise Forbidden("this scoped token has expired")
        if await self._redis.exists(keys.revoked(grant.token_id)):
            raise Forbidden("this scoped token was revoked")
        return grant

    async def while_held(self, chunks: AsyncIterator[bytes], grant: Grant) -> AsyncIterator[bytes]:
        """``chunks`` (a stream opened with the token of ``grant``) until the token expires
        or is revoked: checked before each chunk, a heartbeat too, so that a revocation ends
        an open stream at its next event (within a heartbeat when idle), in every web
        process, as it refuses the next request. One ``EXISTS`` per chunk."""
        try:
            async for chunk in chunks:
                if grant.expiry < time.time():
                    return
                if await self._redis.exists(keys.revoked(grant.token_id)):
                    return
                yield chunk
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()  # its own cleanup now, not when the loop finalizes it

    async def revoke(self, token_id: str) -> None:
        """Refuse the token from now on, in every web process (they read the mark)."""
        expiry = expiry_of(token_id)
        if expiry is None:
            raise InvalidRequest(f"not a token id: {token_id!r}")
        if expiry > time.time():
            await self._redis.set(keys.revoked(token_id), b"1", exat=expiry + 1)


def bearer(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer`` header, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def in_scope(grant: Grant, job_ids: Sequence[str], snapshots: Sequence[bytes | None]) -> None:
    """``Forbidden`` unless every job (with its snapshot JSON, if it exists) is in scope."""
    outside = [j for j, data in zip(job_ids, snapshots, strict=True) if not grant.covers(j, data)]
    if outside:
        raise Forbidden(f"outside this token's scope: {', '.join(outside)}")


class _Gate(Protocol):
    """What ``ScopeChecks`` needs of the ``Gate`` (jobhub.server.auth) that takes them on."""

    scopes: Scopes | None

    @property
    def open(self) -> bool: ...

    def key(self, request: Request) -> None: ...

    async def grant(self, token: str, action: str | None) -> Grant: ...


class ScopeChecks:
    """The checks that only scoped tokens have, for ``Gate``: each lets an API key (or a
    signed-in console) through as ``Gate.key`` does, and a scoped token only within its
    scope and actions."""

    scopes: Scopes | None

    async def grant(self, token: str, action: str | None) -> Grant:
        """The grant of ``token``, which must allow ``action``; ``Forbidden`` otherwise."""
        if self.scopes is None:
            raise Forbidden("scoped tokens are not enabled here")
        grant = await self.scopes.open(token)
        if action is None or not grant.allows(action):
            raise Forbidden(f"this token may not {action or 'do this'}")
        return grant

    async def tag(self: _Gate, request: Request, tag: str | None) -> Grant | None:
        """Require an API key, or a scoped token holding ``tag`` (for its list and stream):
        its grant (for ``held``), None for an API key."""
        scoped = bearer(request) or request.query_params.get("token")
        if self.open or scoped is None or not is_scoped(scoped):
            self.key(request)
            return None
        grant = await self.grant(scoped, "read")
        if tag is None or tag not in grant.tags:
            raise Forbidden(f"this token lists only its own tags: ?tag={'|'.join(grant.tags)}")
        return grant

    def held(self, chunks: AsyncIterator[bytes], grant: Grant | None) -> AsyncIterator[bytes]:
        """A stream's ``chunks``, ended once the scoped token it was opened with (``grant``,
        as ``tag``, ``job`` and ``jobs`` return it) expires or is revoked; as they are for
        an API key (None)."""
        if grant is None or self.scopes is None:
            return chunks
        return self.scopes.while_held(chunks, grant)

    async def starter(self: _Gate, request: Request) -> Grant | None:
        """Require an API key, or a scoped token that may start jobs: its grant (whose tags
        the new job gets, ``forced_tags``), None for an API key."""
        scoped = bearer(request)
        if self.open or scoped is None or not is_scoped(scoped):
            self.key(request)
            return None
        return await self.grant(scoped, "start")

    async def batch(
        self: _Gate, request: Request, batch_id: str, action: str = "read"
    ) -> Grant | None:
        """Require an API key, or a scoped token naming ``batch_id`` that may do ``action``
        (``read``, ``cancel``, ...): what the routes of a batch call::

            await services_of(request).gate.batch(request, batch_id, "cancel")

        Returns the scoped token's grant (for ``held``), None for an API key."""
        scoped = bearer(request) or request.query_params.get("token")
        if self.open or scoped is None or not is_scoped(scoped):
            self.key(request)
            return None
        grant = await self.grant(scoped, action)
        if batch_id not in grant.batches:
            raise Forbidden(f"batch {batch_id!r} is outside this token's scope")
        return grant


class _Signer(Protocol):
    """What ``Scopes`` needs of ``Tokens`` (jobhub.server.auth, which imports this module)."""

    def sign(self, payload: str) -> str: ...

    def signed(self, payload: str, signature: str) -> bool: ...
