"""Jobs per user: tags, per-tag lists and streams, scoped tokens, against a real uvicorn,
Redis and ARQ worker (the session stack's), with two web apps sharing that Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio
from httpx_sse import aconnect_sse

from jobhub import ApiError, AsyncClient, Client, Settings, create_app
from jobhub.core import keys
from jobhub.server.auth import Tokens
from tests.support.helpers import TERMINAL
from tests.support.readme import python_block
from tests.support.servers import ThreadedServer
from tests.support.waiting import wait_until

KEY = "scoped-test-key"
SECRET = "scoped-test-secret"
API = {"Authorization": f"Bearer {KEY}"}


def _app(redis_url: str, secret: str = SECRET) -> ThreadedServer:
    settings = Settings(redis_url=redis_url, api_keys=(KEY,), token_secret=secret)
    return ThreadedServer(create_app(settings))


@pytest.fixture(scope="module")
def webs(redis_url: str, base_url: str) -> Iterator[tuple[ThreadedServer, ThreadedServer]]:
    # base_url: the session stack, whose worker runs the jobs. Two web apps on one Redis,
    # as two web processes behind a load balancer.
    with _app(redis_url) as one, _app(redis_url) as two:
        yield one, two


@pytest.fixture
async def http(
    webs: tuple[ThreadedServer, ThreadedServer],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=webs[0].base_url, timeout=15) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_tag(who: str) -> str:
    return f"user:{who}-{uuid.uuid4().hex[:8]}"


async def mint(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("actions", ["read"])
    response = await client.post("/tokens", json=body, headers=API)
    assert response.status_code == 201, response.text
    grant: dict[str, Any] = response.json()
    return grant


async def create(
    client: httpx.AsyncClient, tags: list[str], function: str = "demo.noop", **extra: Any
) -> dict[str, Any]:
    body = {"function": function, "tags": tags, **extra}
    response = await client.post("/jobs", json=body, headers=API)
    assert response.status_code == 202, response.text
    client.cookies.clear()
    snap: dict[str, Any] = response.json()
    return snap


async def listed(client: httpx.AsyncClient, tag: str, token: str) -> list[dict[str, Any]]:
    """Every job of the tag, page by page, through the token."""
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"tag": tag, "limit": "30", **({"cursor": cursor} if cursor else {})}
        page = await client.get("/jobs", params=params, headers=bearer(token))
        assert page.status_code == 200, page.text
        jobs += page.json()["jobs"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return jobs


async def stream_until(
    client: httpx.AsyncClient,
    path: str,
    done: Any,
    *,
    headers: dict[str, str] | None = None,
    limit: float = 20,
) -> list[tuple[str, dict[str, Any]]]:
    """(event id, snapshot) of each event of ``path`` until ``done(events)`` holds."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with (
        asyncio.timeout(limit),
        aconnect_sse(client, "GET", path, headers=headers or {}) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        async for sse in source.aiter_sse():
            events.append((sse.id, json.loads(sse.data)))
            if done(events):
                break
    return events


async def test_each_users_token_lists_and_streams_exactly_its_own_jobs(
    http: httpx.AsyncClient,
) -> None:
    tags = {"a": new_tag("a"), "b": new_tag("b")}
    created = {who: set[str]() for who in tags}
    for i in range(50):
        for who, tag in tags.items():
            snap = await create(http, [tag, f"n:{i}"])
            assert snap["tags"] == [tag, f"n:{i}"]
            created[who].add(snap["job_id"])
    for who, tag in tags.items():
        token = (await mint(http, scope={"tags": [tag]}))["token"]
        jobs = await listed(http, tag, token)
        assert len(jobs) == 50
        assert {job["job_id"] for job in jobs} == created[who]
        assert [job["created_at"] for job in jobs] == sorted(
            (job["created_at"] for job in jobs), reverse=True
        )
        events = await stream_until(
            http,
            f"/events?tag={tag}&token={token}",
            lambda events, ids=created[who]: {e[1]["job_id"] for e in events} >= ids,
        )
        assert {snapshot["job_id"] for _, snapshot in events} == created[who]


async def test_every_read_stream_and_action_on_another_users_job_is_403(
    http: httpx.AsyncClient,
) -> None:
    mine, theirs = new_tag("a"), new_tag("b")
    own = await create(http, [mine], "demo.count", kwargs={"steps": 50, "delay": 0.2})
    other = await create(http, [theirs], "demo.count", kwargs={"steps": 50, "delay": 0.2})
    grant = await mint(http, scope={"tags": [mine]}, actions=["read", "cancel", "pause"])
    token = grant["token"]
    auth = bearer(token)
    job, path = other["job_id"], f"/jobs/{other['job_id']}"
    refused = [
        await http.get(path, headers=auth),
        await http.get(path, params={"token": token}),
        await http.get(f"{path}/events", headers=auth),
        await http.get(f"{path}/output", headers=auth),
        await http.get(f"{path}/history", headers=auth),
        await http.get(f"{path}/detail", headers=auth),
        await http.post(f"{path}/cancel", headers=auth),
        await http.post(f"{path}/pause", headers=auth),
        await http.post(f"{path}/resume", headers=auth),
        await http.get("/jobs", params={"tag": theirs}, headers=auth),
        await http.get("/events", params={"tag": theirs, "token": token}),
        await http.get("/events", params={"jobs": job, "token": token}),
        await http.get("/events", params={"jobs": f"{own['job_id']},{job}"}, headers=auth),
        # What is no one user's: every job's list and stream, the console's figures.
        await http.get("/jobs", headers=auth),
        await http.get("/events", headers=auth),
        await http.get("/stats", headers=auth),
        await http.delete(f"/jobs/{own['job_id']}", headers=auth),
        await http.post("/tokens", json={"scope": {"tags": [mine]}}, headers=auth),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused), [r.text for r in refused]
    assert all(r.json()["error"]["type"] == "Forbidden" for r in refused)
    # The same token opens its own job, everywhere.
    own_path = f"/jobs/{own['job_id']}"
    for sub in ("", "/output", "/history", "/detail"):
        assert (await http.get(own_path + sub, headers=auth)).status_code == 200, sub
    assert (await http.get("/jobs", params={"tag": mine}, headers=auth)).status_code == 200
    events = await stream_until(
        http, f"/events?jobs={own['job_id']}&token={token}", lambda events: True
    )
    assert events[0][1]["job_id"] == own["job_id"]
    # And a job named in a scope is open without a tag.
    named = (await mint(http, scope={"jobs": [job]}))["token"]
    assert (await http.get(path, headers=bearer(named))).status_code == 200
    assert (await http.get(own_path, headers=bearer(named))).status_code == 403
    canceled = await http.post(f"{own_path}/cancel", headers=auth)
    assert canceled.json()["status"] == "canceled"
    await http.post(f"{path}/cancel", headers=API)


async def test_a_token_without_cancel_cannot_cancel(http: httpx.AsyncClient) -> None:
    tag = new_tag("a")
    job = await create(http, [tag], "demo.count", kwargs={"steps": 50, "delay": 0.2})
    reader = (await mint(http, scope={"tags": [tag]}, actions=["read"]))["token"]
    refused = await http.post(f"/jobs/{job['job_id']}/cancel", headers=bearer(reader))
    assert refused.status_code == 403
    assert "may not cancel" in refused.json()["error"]["detail"]
    assert (await http.get(f"/jobs/{job['job_id']}", headers=API)).json()["status"] != "canceled"
    canceller = (await mint(http, scope={"tags": [tag]}, actions=["cancel"]))["token"]
    done = await http.post(f"/jobs/{job['job_id']}/cancel", headers=bearer(canceller))
    assert done.status_code == 200 and done.json()["status"] == "canceled"
    # A token for cancelling only does not read.
    assert (await http.get(f"/jobs/{job['job_id']}", headers=bearer(canceller))).status_code == 403


async def test_expired_revoked_and_forged_tokens_are_refused(
    http: httpx.AsyncClient, webs: tuple[ThreadedServer, ThreadedServer]
) -> None:
    tag = new_tag("a")
    job = await create(http, [tag])
    path = f"/jobs/{job['job_id']}"
    async with httpx.AsyncClient(base_url=webs[1].base_url, timeout=15) as second:
        revoked = await mint(http, scope={"tags": [tag]})
        assert (await second.get(path, headers=bearer(revoked["token"]))).status_code == 200
        gone = await http.delete(f"/tokens/{revoked['token_id']}", headers=API)
        assert gone.status_code == 204
        # At once, in the other web process: no waiting.
        refused = await second.get(path, headers=bearer(revoked["token"]))
        assert refused.status_code == 403
        assert "revoked" in refused.json()["error"]["detail"]
        stream = await second.get("/events", params={"tag": tag, "token": revoked["token"]})
        assert stream.status_code == 403

    short = await mint(http, scope={"tags": [tag]}, ttl_seconds=1)
    assert (await http.get(path, headers=bearer(short["token"]))).status_code == 200

    async def expired() -> bool:
        return (await http.get(path, headers=bearer(short["token"]))).status_code == 403

    await wait_until(expired, limit=5, interval=0.1, what="the token to expire")

    # Forged: a payload widened to another tag keeps a signature that no longer matches,
    # and a token signed with another secret is no token of ours.
    good = (await mint(http, scope={"tags": [tag]}))["token"]
    scope, payload, signature = good.split(".")
    grant = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    grant[2] = [tag, "user:someone-else"]
    widened = base64.urlsafe_b64encode(json.dumps(grant).encode()).rstrip(b"=").decode()
    elsewhere = Tokens("another-secret", ttl_seconds=60)
    foreign = f"{scope}.{payload}.{elsewhere.sign(f'{scope}.{payload}')}"
    for forged in (f"{scope}.{widened}.{signature}", foreign, f"{scope}.{payload}.x", "~scope.."):
        response = await http.get(path, headers=bearer(forged))
        assert response.status_code == 403, forged


async def test_start_forces_the_tokens_tags(http: httpx.AsyncClient) -> None:
    tag, theirs = new_tag("a"), new_tag("b")
    grant = await mint(http, scope={"tags": [tag, "app:demo"]}, actions=["read", "start"])
    auth = bearer(grant["token"])
    started = await http.post("/jobs", json={"function": "demo.noop"}, headers=auth)
    assert started.status_code == 202, started.text
    assert started.json()["tags"] == [tag, "app:demo"]
    one = await http.post("/jobs", json={"function": "demo.noop", "tags": [tag]}, headers=auth)
    assert one.json()["tags"] == [tag, "app:demo"]
    outside = await http.post(
        "/jobs", json={"function": "demo.noop", "tags": [theirs]}, headers=auth
    )
    assert outside.status_code == 403
    # A client-chosen id that names someone else's job does not hand that job out.
    other = await create(http, [theirs])
    taken = {"function": "demo.noop", "job_id": other["job_id"]}
    assert (await http.post("/jobs", json=taken, headers=auth)).status_code == 403
    jobs = await listed(http, tag, grant["token"])
    assert {j["job_id"] for j in jobs} == {started.json()["job_id"], one.json()["job_id"]}
    reader = (await mint(http, scope={"tags": [tag]}))["token"]
    no_start = await http.post("/jobs", json={"function": "demo.noop"}, headers=bearer(reader))
    assert no_start.status_code == 403
    refused = await http.post(
        "/tokens", json={"scope": {"jobs": ["j1"]}, "actions": ["start"]}, headers=API
    )
    assert refused.status_code == 400  # a job it starts would be outside its scope


async def test_tags_are_validated(http: httpx.AsyncClient) -> None:
    for tags in ([""], ["a" * 65], ["white space"], ["é"], [f"t{i}" for i in range(11)], "x"):
        body = {"function": "demo.noop", "tags": tags}
        response = await http.post("/jobs", json=body, headers=API)
        assert response.status_code == 400, tags
        assert response.json()["error"]["type"] == "InvalidRequest"
    ok = await create(http, ["a" * 64, "A.b_c-d:9"])
    assert ok["tags"] == ["a" * 64, "A.b_c-d:9"]
    assert (await http.get("/jobs", params={"tag": "bad tag"}, headers=API)).status_code == 400
    assert (await http.get("/events", params={"tag": ""}, headers=API)).status_code == 400


async def test_a_job_created_after_the_tag_stream_opened_appears_on_it(
    http: httpx.AsyncClient,
) -> None:
    tag = new_tag("a")
    first = await create(http, [tag])
    token = (await mint(http, scope={"tags": [tag]}))["token"]
    later: dict[str, Any] = {}

    async def create_later() -> None:
        # Once the stream has shown the first job: the second is created on an open stream.
        later.update(await create(http, [tag], "demo.count", kwargs={"steps": 2, "delay": 0}))

    task: asyncio.Task[None] | None = None

    def done(events: list[tuple[str, dict[str, Any]]]) -> bool:
        nonlocal task
        if task is None:
            task = asyncio.create_task(create_later())
        return any(s["job_id"] == later.get("job_id") and s["status"] in TERMINAL
                   for _, s in events)  # fmt: skip

    events = await stream_until(http, f"/events?tag={tag}&token={token}", done)
    assert events[0][1]["job_id"] == first["job_id"]
    seqs = [s["seq"] for _, s in events if s["job_id"] == later["job_id"]]
    assert seqs[0] == 1 and seqs == sorted(set(seqs))  # its first snapshot, then on in order
    assert events[-1][1]["status"] == "finished"


async def test_a_resumed_tag_stream_gets_each_changed_jobs_newest_state_once(
    http: httpx.AsyncClient,
) -> None:
    tag = new_tag("a")
    # 20 jobs that stay queued, and 100 that start once the first stream has closed (5 s is
    # margin for a busy machine) and then change five times each: started, 3 reports, done.
    still = [(await create(http, [tag], defer_seconds=3600))["job_id"] for _ in range(20)]
    kwargs = {"kwargs": {"steps": 3, "delay": 0.02}, "defer_seconds": 5}
    changed = [(await create(http, [tag], "demo.count", **kwargs))["job_id"] for _ in range(100)]
    jobs = still + changed
    token = (await mint(http, scope={"tags": [tag]}))["token"]
    path = f"/events?tag={tag}&token={token}"
    first = await stream_until(http, path, lambda events: len(events) == 120)
    assert {s["job_id"] for _, s in first} == set(jobs)
    assert {s["status"] for _, s in first} == {"queued"}
    ids = [int(event_id) for event_id, _ in first]
    assert ids == sorted(ids)  # versions: what a resume starts after

    async def all_ended() -> bool:
        page = await http.get("/jobs", params={"tag": tag, "limit": "100"}, headers=API)
        return sum(job["status"] == "finished" for job in page.json()["jobs"]) == 100

    await wait_until(all_ended, limit=30, interval=0.2, what="the 100 jobs to finish")
    late = await create(http, [tag], defer_seconds=3600)  # and one that was not there
    headers = {"Last-Event-ID": first[-1][0]}
    resumed = await stream_until(http, path, lambda events: len(events) >= 101, headers=headers)
    # Each changed job once, in its newest state, and the new one; none of the others.
    assert sorted(s["job_id"] for _, s in resumed) == sorted([*changed, late["job_id"]])
    assert [s["status"] for _, s in resumed[:100]] == ["finished"] * 100
    # A cursor that is none of ours starts over: the tag's jobs changed last.
    again = await stream_until(
        http, path, lambda events: len(events) >= 121, headers={"Last-Event-ID": "x"}
    )
    assert {s["job_id"] for _, s in again} == {*jobs, late["job_id"]}


async def test_a_tags_index_expires_with_its_last_job(
    http: httpx.AsyncClient, redis_client: redis.asyncio.Redis
) -> None:
    tag = new_tag("a")
    one = await create(http, [tag], defer_seconds=3600)
    two = await create(http, [tag], defer_seconds=3600)
    index = keys.tagged(tag)
    assert await redis_client.zcard(index) == 2
    assert await redis_client.ttl(index) == -1  # lives while a job of it has not ended
    await http.post(f"/jobs/{one['job_id']}/cancel", headers=API)
    assert await redis_client.ttl(index) == -1
    await http.post(f"/jobs/{two['job_id']}/cancel", headers=API)
    assert 0 < await redis_client.ttl(index) <= 24 * 3600  # with the job: JOBHUB_RESULT_TTL
    three = await create(http, [tag], defer_seconds=3600)
    assert await redis_client.ttl(index) == -1  # a new job brings it back to life
    await http.post(f"/jobs/{three['job_id']}/cancel", headers=API)


async def test_a_secret_rotation_logs_no_one_out(http: httpx.AsyncClient, redis_url: str) -> None:
    tag = new_tag("a")
    job = await create(http, [tag])
    job_token = (await http.post("/jobs", json={"function": "demo.noop"}, headers=API)).headers[
        "jobhub-token"
    ]
    http.cookies.clear()
    scoped = (await mint(http, scope={"tags": [tag]}))["token"]
    session = (await http.post("/session", json={"api_key": KEY})).cookies["jobhub_session"]
    http.cookies.clear()
    job_path = f"/jobs/{job_token.split('.')[0]}"
    with _app(redis_url, f"rotated-secret,{SECRET}") as rotated:
        async with httpx.AsyncClient(base_url=rotated.base_url, timeout=15) as client:
            assert (
                await client.get(f"/jobs/{job['job_id']}", headers=bearer(scoped))
            ).status_code == 200
            assert (await client.get(job_path, headers=bearer(job_token))).status_code == 200
            client.cookies.set("jobhub_session", session)
            assert (await client.get("/jobs")).status_code == 200
            client.cookies.clear()
            fresh = (await mint(client, scope={"tags": [tag]}))["token"]
    # The new secret signs: once the old one is dropped, its tokens stop, the new ones go on.
    with _app(redis_url, "rotated-secret") as after:
        async with httpx.AsyncClient(base_url=after.base_url, timeout=15) as client:
            assert (
                await client.get(f"/jobs/{job['job_id']}", headers=bearer(scoped))
            ).status_code == 403
            assert (
                await client.get(f"/jobs/{job['job_id']}", headers=bearer(fresh))
            ).status_code == 200
            assert (await client.get(job_path, headers=bearer(job_token))).status_code == 403


async def test_the_python_client_mints_and_revokes_tokens(
    http: httpx.AsyncClient, webs: tuple[ThreadedServer, ThreadedServer]
) -> None:
    tag = new_tag("a")
    job = await create(http, [tag])
    async with AsyncClient(webs[0].base_url, api_key=KEY) as hub:
        grant = await hub.token(scope={"tags": [tag]}, actions=["read", "start"], ttl=60)
        assert grant.token.startswith("~scope.") and grant.token_id
        async with AsyncClient(webs[1].base_url, api_key=grant.token) as browser:
            assert (await browser.get(job["job_id"])).tags == [tag]
            started = await browser.submit("demo.noop")
            assert started.tags == [tag]
            await hub.revoke_token(grant.token_id)
            with pytest.raises(ApiError) as refused:
                await browser.get(job["job_id"])
            assert refused.value.status_code == 403
        with pytest.raises(ApiError) as bad:
            await hub.token(scope={"tags": ["no spaces"]})
        assert bad.value.status_code == 400

    def in_a_thread() -> None:
        with Client(webs[0].base_url, api_key=KEY) as hub:
            grant = hub.token(scope={"jobs": [job["job_id"]]}, ttl=30)
            with Client(webs[0].base_url, api_key=grant.token) as browser:
                assert browser.get(job["job_id"]).job_id == job["job_id"]
            hub.revoke_token(grant.token_id)

    await asyncio.to_thread(in_a_thread)


async def test_the_readme_backend_mints_a_token_for_its_signed_in_user(
    http: httpx.AsyncClient, webs: tuple[ThreadedServer, ThreadedServer]
) -> None:
    code = python_block("backend.py")
    code = code.replace('"http://127.0.0.1:8000"', repr(webs[0].base_url))
    code = code.replace('"change-me"', repr(KEY))
    backend = types.ModuleType("backend")
    exec(compile(code, "backend.py", "exec"), backend.__dict__)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(backend.app), base_url="http://app"
    ) as app:
        mine = (await app.get("/jobhub-token", headers={"X-User": "42"})).json()
        theirs = (await app.get("/jobhub-token", headers={"X-User": "43"})).json()
    assert mine["tag"] == "user:42"
    # The page, with its token: starts a job (tagged for it), lists it, and nobody else's.
    auth = bearer(mine["token"])
    started = await http.post("/jobs", json={"function": "demo.noop"}, headers=auth)
    assert started.json()["tags"] == ["user:42"]
    ids = {job["job_id"] for job in await listed(http, "user:42", mine["token"])}
    assert started.json()["job_id"] in ids
    path = f"/jobs/{started.json()['job_id']}"
    assert (await http.get(path, headers=bearer(theirs["token"]))).status_code == 403
    refused = await http.get("/jobs", params={"tag": "user:42"}, headers=bearer(theirs["token"]))
    assert refused.status_code == 403
