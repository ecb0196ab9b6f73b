"""Scoped tokens at the gate, with a real Redis for revocations: the batch check the batch
routes call, a batch's jobs read from their snapshots, and a secret that rotates."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
import redis.asyncio
from starlette.requests import Request

from jobhub.core.exceptions import Forbidden, Unauthorized
from jobhub.server.auth import CSRF_HEADER, SESSION_COOKIE, Gate, Tokens
from jobhub.server.scopes import Scope, Scopes, TokenRequest, action_of

KEY = "gate-key"


def request(
    method: str = "GET",
    path: str = "/batches/b1",
    token: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    if token is not None:
        raw.append((b"authorization", f"Bearer {token}".encode()))
    return Request({"type": "http", "method": method, "path": path, "headers": raw,
                    "query_string": b""})  # fmt: skip


def mint(scopes: Scopes, actions: list[str], **scope: list[str]) -> str:
    wanted = TokenRequest(Scope(**scope), actions=actions)  # type: ignore[arg-type]
    return scopes.issue(wanted).token


async def no_snapshots(job_ids: Sequence[str]) -> list[bytes | None]:
    return [None for _ in job_ids]


async def test_gate_batch_lets_a_token_naming_the_batch_do_its_actions(
    redis_client: redis.asyncio.Redis,
) -> None:
    tokens = Tokens("secret", ttl_seconds=60)
    scopes = Scopes(tokens, redis_client)
    gate = Gate([KEY], tokens, no_snapshots, scopes)
    token = mint(scopes, ["read", "cancel"], batches=["b1"])
    await gate.batch(request(token=token), "b1")
    await gate.batch(request("POST", "/batches/b1/cancel", token), "b1", "cancel")
    for batch_id, action in (("b2", "read"), ("b1", "pause"), ("b1", "start")):
        with pytest.raises(Forbidden):
            await gate.batch(request(token=token), batch_id, action)
    await gate.batch(request(token=KEY), "any-batch", "cancel")  # an API key opens all
    with pytest.raises(Unauthorized):
        await gate.batch(request(), "b1")
    # Revoked: refused at once.
    grant = await scopes.open(token)
    await scopes.revoke(grant.token_id)
    with pytest.raises(Forbidden, match="revoked"):
        await gate.batch(request(token=token), "b1")


async def test_a_batch_scope_opens_the_jobs_whose_snapshot_names_the_batch(
    redis_client: redis.asyncio.Redis,
) -> None:
    scopes = Scopes(Tokens("secret", ttl_seconds=60), redis_client)
    grant = await scopes.open(mint(scopes, ["read"], batches=["b1"], tags=["user:1"]))

    def snapshot(**fields: object) -> bytes:
        return msgspec.json.encode({"job_id": "j", "status": "queued", "seq": 1, **fields})

    assert grant.covers("j", snapshot(batch_id="b1"))
    assert not grant.covers("j", snapshot(batch_id="b2"))
    assert not grant.covers("j", snapshot())  # a snapshot of before batches: no batch_id
    assert grant.covers("j", snapshot(tags=["user:2", "user:1"]))
    assert not grant.covers("j", snapshot(tags=["user:2"], batch_id=None))
    assert not grant.covers("j", None)


def test_the_action_of_a_request_on_one_job() -> None:
    assert action_of(request("GET", "/jobs/j/events")) == "read"
    assert action_of(request("POST", "/jobs/j/cancel")) == "cancel"
    assert action_of(request("POST", "/jobs/j/pause")) == "pause"
    assert action_of(request("POST", "/jobs/j/resume")) == "pause"
    assert action_of(request("POST", "/jobs/j/retry")) is None
    assert action_of(request("DELETE", "/jobs/j")) is None


async def test_a_rotated_secret_still_accepts_sessions_and_their_csrf_tokens() -> None:
    old, both, new = (Tokens(s, ttl_seconds=60) for s in ("old", "new,old", "new"))
    session = old.session()
    assert both.valid_session(session) and not new.valid_session(session)
    assert both.signed(f"csrf.{session}", old.csrf(session))
    assert both.sign("x") == new.sign("x")  # the first secret signs
    gate = Gate([KEY], both, no_snapshots)
    change = request(
        "POST",
        "/jobs/j/cancel",
        headers=[("cookie", f"{SESSION_COOKIE}={session}"), (CSRF_HEADER, old.csrf(session))],
    )
    assert gate.session(change)
    with pytest.raises(ValueError):
        Tokens(" , ", ttl_seconds=60)
