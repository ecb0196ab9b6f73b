"""GET /events?jobs=...: several jobs on one stream, against the real stack."""

from __future__ import annotations

import asyncio
import json

import httpx
from httpx_sse import aconnect_sse

from tests.support.helpers import start, wait_for


async def follow_many(
    client: httpx.AsyncClient, job_ids: list[str], cursor: str | bytes | None = None
) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    headers = {"Last-Event-ID": cursor} if cursor is not None else {}
    events = []
    async with asyncio.timeout(20):
        path = "/events?jobs=" + ",".join(job_ids)
        async with aconnect_sse(client, "GET", path, headers=headers) as source:
            assert source.response.status_code == 200
            async for sse in source.aiter_sse():
                if sse.event == "message":  # snapshots; log and output entries are named
                    events.append((sse.id, json.loads(sse.data)))
                else:
                    assert sse.event in ("log", "output"), sse.event
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
        # (Each job's part is its seq, and after output came, ":" and its last entry.)
        cursor = [int(part.partition(":")[0]) for part in event_id.split(".")]
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


async def test_a_job_deleted_since_the_cursor_is_told_gone_and_the_rest_goes_on(
    client: httpx.AsyncClient,
) -> None:
    ended = await start(client, "demo.count", steps=1, delay=0)
    running = await start(client, "demo.count", steps=6, delay=0.2)
    ended_final = await wait_for(client, ended["job_id"])
    assert (await client.delete(f"/jobs/{ended['job_id']}")).status_code == 204
    job_ids = [ended["job_id"], running["job_id"]]
    path = "/events?jobs=" + ",".join(job_ids)
    # Never seen by the client: unknown, as on a first open.
    assert (await client.get(path)).status_code == 404
    # Seen (its final snapshot is in the cursor): the stream says it is gone, then goes on.
    events: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    headers = {"Last-Event-ID": f"{ended_final['seq']}.0"}
    async with asyncio.timeout(20):
        async with aconnect_sse(client, "GET", path, headers=headers) as source:
            assert source.response.status_code == 200
            async for sse in source.aiter_sse():
                if sse.event in ("message", "error"):
                    events.append((sse.event, json.loads(sse.data)))
    assert events[0][0] == "error"
    assert events[0][1]["error"]["type"] == "JobNotFound"
    assert events[0][1]["error"]["job_id"] == ended["job_id"]
    assert {snap["job_id"] for kind, snap in events[1:]} == {running["job_id"]}
    assert events[-1][1]["status"] == "finished"


async def test_a_cursor_of_anything_but_ascii_digits_is_no_cursor(
    client: httpx.AsyncClient,
) -> None:
    jobs = [await start(client, "demo.count", steps=1, delay=0) for _ in range(2)]
    job_ids = [j["job_id"] for j in jobs]
    finals = [await wait_for(client, job_id) for job_id in job_ids]
    held = f"{finals[0]['seq']}.{finals[1]['seq']}"
    # str.isdigit() takes superscripts and other scripts' digits; int() refuses "²" and
    # reads "٣" as 3. None of these is a seq: the cursor is ignored, everything sent again.
    for part in ("\u00b2", "\u0663", "+1", "1_0", "", "9" * 19):
        cursor = f"{finals[0]['seq']}.{part}"
        events = await follow_many(client, job_ids, cursor=cursor.encode())
        assert {snap["job_id"] for _, snap in events} == set(job_ids), part
    for raw in (b"1.\xb2", b"\xb3.1"):  # one Latin-1 byte each: never a 500
        response = await client.get(
            "/events?jobs=" + ",".join(job_ids), headers={"Last-Event-ID": raw}
        )
        assert response.status_code in (200, 400), raw
    # The cursor itself still works.
    done = await client.get("/events?jobs=" + ",".join(job_ids), headers={"Last-Event-ID": held})
    assert done.status_code == 204


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


async def test_one_stream_of_several_jobs_carries_their_output_and_resumes_it(
    client: httpx.AsyncClient,
) -> None:
    jobs = [await start(client, "demo.tokens", count=40, delay=0.005) for _ in range(2)]
    path = "/events?jobs=" + ",".join(j["job_id"] for j in jobs)
    first: list[str] = []
    cursor = None
    async with asyncio.timeout(20), aconnect_sse(client, "GET", path) as source:
        async for sse in source.aiter_sse():
            cursor = sse.id
            if sse.event == "output":
                first.append(json.loads(sse.data)["data"])
                if len(first) == 30:
                    break  # cut mid-way
    assert cursor is not None
    rest: list[str] = []
    async with asyncio.timeout(20):
        async with aconnect_sse(client, "GET", path, headers={"Last-Event-ID": cursor}) as src:
            async for sse in src.aiter_sse():
                if sse.event == "output":
                    rest.append(json.loads(sse.data)["data"])
    # Both jobs write the same words: across the cut, each arrives exactly twice.
    assert sorted(first + rest) == sorted([f"w{i} " for i in range(40)] * 2)
