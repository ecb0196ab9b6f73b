"""GET /events?jobs=...: several jobs on one stream, against the real stack."""

from __future__ import annotations

import asyncio
import json

import httpx
from httpx_sse import aconnect_sse

from .helpers import start, wait_for


async def follow_many(
    client: httpx.AsyncClient, job_ids: list[str], cursor: str | None = None
) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    headers = {"Last-Event-ID": cursor} if cursor is not None else {}
    events = []
    async with asyncio.timeout(20):
        path = "/events?jobs=" + ",".join(job_ids)
        async with aconnect_sse(client, "GET", path, headers=headers) as source:
            assert source.response.status_code == 200
            async for sse in source.aiter_sse():
                assert sse.event == "message"
                events.append((sse.id, json.loads(sse.data)))
    return events


async def test_one_stream_carries_every_job_and_ends_when_all_are_terminal(
    client: httpx.AsyncClient,
) -> None:
    jobs = [
        await start(client, "demo.count", steps=3, delay=0.1),
        await start(client, "demo.fail", after=1, delay=0.1),
        await start(client, "demo.count", steps=1, delay=0.3),
    ]
    job_ids = [j["job_id"] for j in jobs]
    events = await follow_many(client, job_ids)
    final = {}
    for event_id, snap in events:
        final[snap["job_id"]] = snap
        # The id is the cursor: what the client holds of each job, in the order listed.
        cursor = [int(part) for part in event_id.split(".")]
        assert cursor[job_ids.index(snap["job_id"])] == snap["seq"]
    assert [final[j]["status"] for j in job_ids] == ["finished", "failed", "finished"]
    for job_id in job_ids:
        seqs = [s["seq"] for _, s in events if s["job_id"] == job_id]
        assert seqs == sorted(set(seqs))
    # Reconnecting with the last cursor: the client has every final state.
    last_cursor = events[-1][0]
    response = await client.get(
        "/events?jobs=" + ",".join(job_ids), headers={"Last-Event-ID": last_cursor}
    )
    assert response.status_code == 204


async def test_reconnect_sends_only_what_the_cursor_lacks(client: httpx.AsyncClient) -> None:
    done = await start(client, "demo.count", steps=1, delay=0)
    running = await start(client, "demo.count", steps=4, delay=0.2)
    done_final = await wait_for(client, done["job_id"])
    job_ids = [done["job_id"], running["job_id"]]
    # The client holds the finished job's final snapshot and nothing of the other.
    events = await follow_many(client, job_ids, cursor=f"{done_final['seq']}.0")
    assert {snap["job_id"] for _, snap in events} == {running["job_id"]}
    assert events[-1][1]["status"] == "finished"
    # A cursor that does not fit the list is ignored: everything is sent again.
    again = await follow_many(client, job_ids, cursor="7")
    assert {snap["job_id"] for _, snap in again} == set(job_ids)


async def test_many_events_rejects_bad_lists(client: httpx.AsyncClient) -> None:
    for query, status in [
        ("?jobs=", 400),
        ("?jobs=a.b", 400),
        ("?jobs=" + ",".join(f"j{i}" for i in range(101)), 400),
        ("?jobs=nope-1,nope-2", 404),
    ]:
        response = await client.get("/events" + query)
        assert response.status_code == status, query
        assert response.json()["error"]["detail"]
    snap = await start(client, "demo.noop")
    mixed = await client.get(f"/events?jobs={snap['job_id']},missing-job")
    assert mixed.status_code == 404
    assert "missing-job" in mixed.json()["error"]["detail"]


async def test_events_without_a_list_streams_every_job(client: httpx.AsyncClient) -> None:
    seen: dict[str, list[str]] = {}
    async with asyncio.timeout(20), aconnect_sse(client, "GET", "/events") as source:
        assert source.response.status_code == 200
        jobs = [await start(client, "demo.count", steps=2, delay=0.05) for _ in range(2)]
        wanted = {j["job_id"] for j in jobs}
        async for sse in source.aiter_sse():
            snap = json.loads(sse.data)
            seen.setdefault(snap["job_id"], []).append(snap["status"])
            if all(seen.get(j, [""])[-1] == "finished" for j in wanted):
                break
    for job_id in wanted:
        assert seen[job_id][-1] == "finished"
