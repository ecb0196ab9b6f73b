"""A scoped token's bounds held against what a user holding one can try: a job id used
again under another user's tags, an id only the archive still knows, a batch token's
actions. Real uvicorn, Redis and ARQ worker (a stack of this module's own), and a SQLite
archive whose rows are written straight into its tables."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from jobhub import Settings, create_app
from jobhub.lifecycle.lifecycle import retry_id
from tests.support.archive_rows import insert, job_row, migrated
from tests.support.servers import ThreadedServer, running_stack
from tests.support.waiting import wait_until

KEY = "boundary-key"
API = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('archive') / 'archive.db'}"

    async def create_schema() -> None:
        await (await migrated(url)).dispose()

    asyncio.run(create_schema())
    with running_stack() as stack:
        settings = Settings(
            redis_url=stack.redis_url,
            api_keys=(KEY,),
            token_secret="boundary-secret",
            archive_url=url,
        )
        with ThreadedServer(create_app(settings)) as server:
            yield server


@pytest.fixture
async def http(web: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=web.base_url, timeout=20) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tag_of(who: str) -> str:
    return f"user:{who}-{uuid.uuid4().hex[:8]}"


async def token_for(http: httpx.AsyncClient, tags: list[str], *actions: str) -> str:
    body = {"scope": {"tags": tags}, "actions": list(actions or ["read"])}
    response = await http.post("/tokens", json=body, headers=API)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def start(http: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    response = await http.post("/jobs", json={"function": "demo.noop", **body}, headers=headers)
    http.cookies.clear()
    return response


async def archive(web: ThreadedServer, row: dict[str, Any]) -> None:
    """``row`` into the web app's archive, as the archiver writes an ended job."""
    url = web.app.state.services.settings.archive_url
    engine = await migrated(url)
    await insert(engine, [row])
    await engine.dispose()


async def test_a_job_id_used_again_does_not_put_another_users_job_in_a_tags_list(
    http: httpx.AsyncClient,
) -> None:
    mine, theirs = tag_of("a"), tag_of("b")
    reused = f"reused-{uuid.uuid4().hex[:8]}"
    # A job of mine that stays queued keeps my tag's index alive; another under an id I
    # chose ends and is deleted, and the id is free again.
    await start(http, API, tags=[mine], defer_seconds=3600)
    assert (await start(http, API, tags=[mine], job_id=reused)).status_code == 202
    await http.post(f"/jobs/{reused}/cancel", headers=API)
    assert (await http.delete(f"/jobs/{reused}", headers=API)).status_code == 204
    # Their app starts a job under that id, with their tag and their result.
    theirs_token = await token_for(http, [theirs], "read", "start")

    async def started_again() -> httpx.Response | None:
        # (The queue lets go of a canceled job's id a moment after the cancel.)
        response = await start(http, bearer(theirs_token), job_id=reused)
        return response if response.status_code == 202 else None

    created = await wait_until(started_again, 10, "the id to be free", interval=0.1)
    assert created.json()["tags"] == [theirs]

    token = await token_for(http, [mine])
    page = await http.get("/jobs", params={"tag": mine}, headers=bearer(token))
    assert page.status_code == 200, page.text
    assert [job["tags"] for job in page.json()["jobs"]] == [[mine]]
    listed = await http.get("/jobs", params={"tag": theirs}, headers=API)
    assert [job["job_id"] for job in listed.json()["jobs"]] == [reused]
    # Nor in my tag's stream, which starts with the tag's jobs changed last: a job started
    # once it is open comes after all of those.
    seen: list[dict[str, Any]] = []
    async with (
        asyncio.timeout(10),
        aconnect_sse(http, "GET", "/events", params={"tag": mine, "token": token}) as source,
    ):
        later = (await start(http, API, tags=[mine], defer_seconds=3600)).json()["job_id"]
        async for sse in source.aiter_sse():
            seen.append(json.loads(sse.data))
            if seen[-1]["job_id"] == later:
                break
    assert reused not in {snapshot["job_id"] for snapshot in seen}
    assert {tuple(snapshot["tags"]) for snapshot in seen} == {(mine,)}


async def test_a_token_cannot_start_a_job_under_the_id_of_another_users_archived_job(
    http: httpx.AsyncClient, web: ThreadedServer
) -> None:
    mine, theirs = tag_of("a"), tag_of("b")
    gone = f"archived-{uuid.uuid4().hex[:8]}"
    # Their job, ended and then forgotten by Redis: only the archive answers for it.
    await archive(web, job_row(gone, tags=[theirs], result={"secret": "theirs"}))
    their_reader = bearer(await token_for(http, [theirs]))
    assert (await http.get(f"/jobs/{gone}", headers=their_reader)).json()["archived"] is True

    starter = bearer(await token_for(http, [mine], "read", "start"))
    taken = await start(http, starter, job_id=gone)
    assert taken.status_code == 403, taken.text
    child = {"function": "demo.noop", "job_id": gone}
    batch = await http.post("/batches", json={"jobs": [child]}, headers=starter)
    http.cookies.clear()
    assert batch.status_code == 403, batch.text
    # Their job is still theirs, and still not mine.
    assert (await http.get(f"/jobs/{gone}", headers=their_reader)).json()["archived"] is True
    assert (await http.get(f"/jobs/{gone}", headers=starter)).status_code == 403


async def test_a_batch_token_a_scoped_token_gets_holds_no_more_than_that_token(
    http: httpx.AsyncClient,
) -> None:
    grant = await http.post(
        "/tokens",
        json={"scope": {"tags": [tag_of("a")]}, "actions": ["read", "start"], "ttl_seconds": 60},
        headers=API,
    )
    starter = bearer(grant.json()["token"])
    slow = {"function": "demo.count", "kwargs": {"steps": 50, "delay": 0.2}}
    created = await http.post("/batches", json={"jobs": [slow]}, headers=starter)
    http.cookies.clear()
    assert created.status_code == 202, created.text
    batch = f"/batches/{created.json()['batch_id']}"
    derived = bearer(created.headers["jobhub-token"])
    assert (await http.get(batch, headers=derived)).status_code == 200
    # The token that started the batch may not cancel: nor may the batch's token.
    assert (await http.post(f"{batch}/cancel", headers=derived)).status_code == 403
    # Revoking the token revokes what it was handed.
    revoked = await http.delete(f"/tokens/{grant.json()['token_id']}", headers=API)
    assert revoked.status_code == 204
    assert (await http.get(batch, headers=derived)).status_code == 403
    await http.post(f"{batch}/cancel", headers=API)


async def test_a_child_id_used_again_does_not_put_another_users_job_in_a_batch(
    http: httpx.AsyncClient,
) -> None:
    child = f"child-{uuid.uuid4().hex[:8]}"
    slow = {"function": "demo.count", "kwargs": {"steps": 50, "delay": 0.2}}
    jobs = [{"function": "demo.noop", "job_id": child}, slow]
    created = await http.post("/batches", json={"jobs": jobs}, headers=API)
    http.cookies.clear()
    assert created.status_code == 202, created.text
    batch = f"/batches/{created.json()['batch_id']}"
    mine = bearer(created.headers["jobhub-token"])

    async def ended() -> bool:
        return (await http.get(f"/jobs/{child}", headers=API)).json()["status"] == "finished"

    await wait_until(ended, 10, "the child to finish")
    assert (await http.delete(f"/jobs/{child}", headers=API)).status_code == 204
    theirs = bearer(await token_for(http, [tag_of("b")], "read", "start"))
    assert (await start(http, theirs, job_id=child, **slow)).status_code == 202
    page = await http.get(f"{batch}/jobs", headers=mine)
    assert page.status_code == 200, page.text
    assert child not in [job["job_id"] for job in page.json()["jobs"]]
    assert (await http.get(f"/jobs/{child}", headers=mine)).status_code == 403
    # Cancelling my batch cancels my children, not their job.
    assert (await http.post(f"{batch}/cancel", headers=mine)).json()["status"] == "canceled"
    assert (await http.get(f"/jobs/{child}", headers=theirs)).json()["status"] != "canceled"
    async with (
        asyncio.timeout(10),
        aconnect_sse(http, "GET", f"{batch}/events", headers=mine) as source,
    ):
        events = [json.loads(sse.data) async for sse in source.aiter_sse()]
    assert child not in {event.get("job_id") for event in events}
    await http.post(f"/jobs/{child}/cancel", headers=API)


async def test_a_stream_opened_with_a_token_ends_once_the_token_is_revoked(
    http: httpx.AsyncClient,
) -> None:
    mine = tag_of("a")
    slow = {"function": "demo.count", "kwargs": {"steps": 100, "delay": 0.1}}
    job = (await start(http, API, tags=[mine], **slow)).json()["job_id"]
    # A tag's stream never ends on its own, a job's at the job's end: here 10 s away.
    streams = [("/events", {"tag": mine}), (f"/jobs/{job}/events", {}), ("/events", {"jobs": job})]
    for path, params in streams:
        grant = (await http.post("/tokens", json={"scope": {"tags": [mine]}}, headers=API)).json()
        seen: list[dict[str, Any]] = []
        async with (
            asyncio.timeout(8),
            aconnect_sse(http, "GET", path, params={**params, "token": grant["token"]}) as source,
        ):
            async for sse in source.aiter_sse():
                seen.append(json.loads(sse.data))
                if len(seen) == 1:
                    revoked = await http.delete(f"/tokens/{grant['token_id']}", headers=API)
                    assert revoked.status_code == 204
        assert len(seen) < 5, path
    await http.post(f"/jobs/{job}/cancel", headers=API)


async def test_a_batch_stream_opened_with_a_token_ends_once_the_token_is_revoked(
    http: httpx.AsyncClient,
) -> None:
    created = await http.post("/batches", json={"jobs": [], "open": True}, headers=API)
    http.cookies.clear()
    batch_id = created.json()["batch_id"]
    scope = {"scope": {"batches": [batch_id]}}
    grant = (await http.post("/tokens", json=scope, headers=API)).json()
    noop = {"jobs": [{"function": "demo.noop"}]}
    seen = 0
    async with (
        asyncio.timeout(8),
        aconnect_sse(
            http, "GET", f"/batches/{batch_id}/events", params={"token": grant["token"]}
        ) as source,
    ):
        async for _ in source.aiter_sse():
            seen += 1
            if seen == 1:
                await http.delete(f"/tokens/{grant['token_id']}", headers=API)
            if seen < 10:
                # An open batch's stream goes on while children join: not once revoked.
                await http.post(f"/batches/{batch_id}/jobs", json=noop, headers=API)
    assert seen < 3
    await http.post(f"/batches/{batch_id}/seal", headers=API)


async def test_a_job_started_under_the_id_of_another_users_retry_is_not_that_retry(
    http: httpx.AsyncClient,
) -> None:
    theirs = await start(http, API, tags=[tag_of("b")])
    job_id = theirs.json()["job_id"]

    async def ended() -> bool:
        return (await http.get(f"/jobs/{job_id}", headers=API)).json()["status"] == "finished"

    await wait_until(ended, 10, "their job to finish")
    # A retry's id is derived from the job's, and anyone can derive it.
    starter = bearer(await token_for(http, [tag_of("a")], "read", "start"))
    squatted = await start(http, starter, job_id=retry_id(job_id))
    assert squatted.status_code == 202, squatted.text
    retried = await http.post(f"/jobs/{job_id}/retry", headers=API)
    http.cookies.clear()
    assert retried.status_code == 409, retried.text
    assert retried.json()["error"]["type"] == "IdTaken"


async def test_a_job_a_scoped_token_starts_opens_to_no_more_than_that_token(
    http: httpx.AsyncClient,
) -> None:
    grant = await http.post(
        "/tokens",
        json={"scope": {"tags": [tag_of("a")]}, "actions": ["read", "start"]},
        headers=API,
    )
    slow = {"function": "demo.count", "kwargs": {"steps": 50, "delay": 0.2}}
    started = await http.post("/jobs", json=slow, headers=bearer(grant.json()["token"]))
    assert started.status_code == 202, started.text
    path = f"/jobs/{started.json()['job_id']}"
    # Whatever it was handed (a job's token, its cookie, kept by this client) may not cancel
    # what the token may not, nor read once the token is revoked.
    handed = bearer(started.headers.get("jobhub-token", "none"))
    assert (await http.post(f"{path}/cancel", headers=handed)).status_code in (401, 403)
    assert (
        await http.delete(f"/tokens/{grant.json()['token_id']}", headers=API)
    ).status_code == 204
    assert (await http.get(path)).status_code in (401, 403)
    assert (await http.get(path, headers=handed)).status_code in (401, 403)
    http.cookies.clear()
    await http.post(f"{path}/cancel", headers=API)
