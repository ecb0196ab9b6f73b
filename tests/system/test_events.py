"""GET /jobs/{id}/events: real sockets against a real uvicorn (a stream never ends in-process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.support.helpers import follow, start, wait_for
from tests.support.waiting import wait_until


async def test_stream_delivers_every_snapshot_in_seq_order_then_ends(
    client: httpx.AsyncClient,
) -> None:
    snap = await start(client, "demo.count", steps=5, delay=0.2)
    events = await follow(client, snap["job_id"])
    seqs = [s["seq"] for _, s in events]
    assert seqs == sorted(set(seqs))
    assert [event_id for event_id, _ in events] == [str(s) for s in seqs]
    # Reports 0.2 s apart all arrive. The last report and "finished" are written back to
    # back, and a stream holds only the newest undelivered snapshot, so it may skip to
    # "finished", which carries the 100 % itself.
    percents = [s["percent"] for _, s in events if s["status"] == "running"]
    assert percents[:4] == [20, 40, 60, 80]
    assert seqs[-1] == 8
    assert events[-1][1]["status"] == "finished"
    assert events[-1][1]["result"] == {"steps": 5}


async def test_stream_headers_stop_buffering_and_caching(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=1, delay=0)
    await wait_for(client, snap["job_id"])
    async with client.stream("GET", f"/jobs/{snap['job_id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
        body = await response.aread()
    # One event: the reconnection delay (the first event of every stream carries it), the
    # id, the data on one line, and no event name.
    lines = [line for line in body.decode().splitlines() if line]
    assert len(lines) == 3
    assert lines[0].startswith("retry: ")
    assert 1000 <= int(lines[0].removeprefix("retry: ")) <= 4000
    assert lines[1].startswith("id: ")
    assert lines[2].startswith("data: {")


async def test_late_subscriber_gets_the_current_snapshot_first(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=6, delay=0.15)

    async def progressed() -> dict[str, Any] | None:
        current: dict[str, Any] = (await client.get(f"/jobs/{snap['job_id']}")).json()
        return current if current["seq"] > 2 else None

    current = await wait_until(progressed, what="the job's third snapshot")
    assert current["status"] == "running"
    events = await follow(client, snap["job_id"])
    first = events[0][1]
    assert first["seq"] >= current["seq"] > 2
    assert events[-1][1]["status"] == "finished"


async def test_last_event_id_resume_skips_what_was_seen(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=4, delay=0.15)
    seen = 0
    async with asyncio.timeout(10):
        while seen < 3:
            seen = (await client.get(f"/jobs/{snap['job_id']}")).json()["seq"]
            await asyncio.sleep(0.02)
    events = await follow(client, snap["job_id"], last_event_id=seen)
    assert all(s["seq"] > seen for _, s in events)
    assert events[-1][1]["status"] == "finished"


async def test_reconnect_after_the_end_gets_204(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=2, delay=0.01)
    events = await follow(client, snap["job_id"])
    final_seq = events[-1][1]["seq"]
    response = await client.get(
        f"/jobs/{snap['job_id']}/events", headers={"Last-Event-ID": str(final_seq)}
    )
    assert response.status_code == 204
    # Behind the client's state: the final snapshot is sent, then the stream ends.
    again = await follow(client, snap["job_id"], last_event_id=final_seq - 1)
    assert [s["seq"] for _, s in again] == [final_seq]


# Numbers that str.isdigit() takes (int() then refuses "²" and reads "٣" as 3), signs and
# separators int() accepts, and too many digits: none is a seq, so none is a cursor.
NOT_SEQS = [
    *("abc", "-5", "+5", "1_0", "0x1f", "9" * 40, ""),
    *("\u00b2", "\u00b3", "1\u00b2"),  # superscripts
    *("\u0663", "\u0661\u0662", "\u07c2", "\u09ea"),  # Arabic-Indic, NKo, Bengali digits
]


async def test_a_last_event_id_that_is_not_ascii_digits_is_treated_as_none(
    client: httpx.AsyncClient,
) -> None:
    snap = await start(client, "demo.count", steps=1, delay=0)
    await wait_for(client, snap["job_id"])
    for header in NOT_SEQS:
        events = await follow_with_header(client, snap["job_id"], header.encode())
        assert events[-1]["status"] == "finished", header
    # The same superscript as one Latin-1 byte, the only way "²" reaches a header decoded
    # as Latin-1: never a 500 (a 400 if invalid UTF-8 is refused, else no cursor).
    for raw in (b"\xb2", b"1\xb3"):
        response = await client.get(
            f"/jobs/{snap['job_id']}/events", headers={"Last-Event-ID": raw}
        )
        assert response.status_code in (200, 400), raw


async def follow_with_header(client: httpx.AsyncClient, job_id: str, value: bytes) -> list[dict]:  # type: ignore[type-arg]
    async with client.stream(
        "GET", f"/jobs/{job_id}/events", headers={"Last-Event-ID": value}
    ) as r:
        assert r.status_code == 200
        body = (await r.aread()).decode()
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


async def test_many_streams_on_one_job_all_get_the_final_state(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=3, delay=0.2)
    results = await asyncio.gather(*(follow(client, snap["job_id"]) for _ in range(20)))
    for events in results:
        assert events[-1][1]["status"] == "finished"
        seqs = [s["seq"] for _, s in events]
        assert seqs == sorted(set(seqs))
