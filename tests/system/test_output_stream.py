"""A job's live output on its event stream, against the real stack (uvicorn, `arq` worker,
redis-server): every entry once and in order, resumable, replayed, never held up."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from httpx_sse import aconnect_sse

from jobhub import Settings, create_app
from tests.support.helpers import start, wait_for
from tests.support.servers import ThreadedServer

Event = tuple[str, str, Any]  # (event name, id, data)


async def read_stream(
    client: httpx.AsyncClient,
    job_id: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
) -> list[Event]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    async with asyncio.timeout(30):
        async with aconnect_sse(client, "GET", f"/jobs/{job_id}/events", headers=headers) as src:
            assert src.response.status_code == 200
            async for sse in src.aiter_sse():
                events.append((sse.event, sse.id, json.loads(sse.data)))
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events


def chunks(events: list[Event]) -> list[Any]:
    return [data["data"] for name, _, data in events if name == "output"]


def words(count: int) -> list[str]:
    return [f"w{i} " for i in range(count)]


async def test_a_stream_carries_every_chunk_once_in_order_among_its_snapshots(
    client: httpx.AsyncClient,
) -> None:
    job = await start(client, "demo.tokens", count=60, delay=0.01)
    events = await read_stream(client, job["job_id"])
    assert chunks(events) == words(60)
    assert {name for name, _, _ in events} == {"message", "output", "log"}
    logs = [data["message"] for name, _, data in events if name == "log"]
    assert logs == [f"{n} words so far" for n in range(10, 61, 10)]
    # A log line written before a report comes before that report's snapshot.
    order = [data["message"] for name, _, data in events if name in ("log", "message")]
    for n in range(10, 61, 10):
        report = f"{n}/60 words"
        if report in order:
            assert order.index(f"{n} words so far") < order.index(report)
    assert events[-1][0] == "message" and events[-1][2]["status"] == "finished"
    assert events[-1][2]["result"] == "".join(words(60))
    # Ids are positions: the snapshot's seq, then (once output came) the entry's id too,
    # neither ever going back.
    positions = [event_id.split(":") for _, event_id, _ in events]
    first_entry = next(i for i, p in enumerate(positions) if len(p) == 2)
    assert all(len(p) == 2 for p in positions[first_entry:])
    keys = [(int(p[0]), tuple(map(int, p[1].split("-")))) for p in positions[first_entry:]]
    assert keys == sorted(keys)


async def test_a_stream_cut_midway_resumes_with_nothing_lost_or_repeated(
    client: httpx.AsyncClient,
) -> None:
    job = await start(client, "demo.tokens", count=80, delay=0.01)
    first = await read_stream(client, job["job_id"], stop_after=25)
    resumed = await read_stream(client, job["job_id"], last_event_id=first[-1][1])
    assert chunks(first) + chunks(resumed) == words(80)
    seqs = [d["seq"] for name, _, d in first + resumed if name == "message"]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    again = await client.get(
        f"/jobs/{job['job_id']}/events", headers={"Last-Event-ID": resumed[-1][1]}
    )
    assert again.status_code == 204


async def test_a_late_joiner_gets_the_whole_output_then_the_final_snapshot(
    client: httpx.AsyncClient,
) -> None:
    job = await start(client, "demo.tokens", count=30, delay=0)
    await wait_for(client, job["job_id"])
    events = await read_stream(client, job["job_id"])
    assert chunks(events) == words(30)
    assert [name for name, _, _ in events][-1] == "message"
    assert [d["status"] for name, _, d in events if name == "message"] == ["finished"]


async def test_a_failed_jobs_traceback_reaches_the_stream_not_the_snapshot(
    client: httpx.AsyncClient,
) -> None:
    job = await start(client, "demo.fail", after=1, delay=0.01)
    events = await read_stream(client, job["job_id"])
    errors = [d for name, _, d in events if name == "log" and d["level"] == "error"]
    assert len(errors) == 1 and "Traceback" in errors[0]["message"]
    assert "ValueError: demo failure after 1 steps" in errors[0]["message"]
    final = events[-1][2]
    assert final["error"] == {"type": "ValueError", "detail": "demo failure after 1 steps"}


async def test_many_watchers_all_get_everything_and_a_stalled_one_holds_up_none(
    client: httpx.AsyncClient, base_url: str
) -> None:
    count = 2000
    job = await start(client, "demo.tokens", count=count, delay=0.0005)
    # One reader that connects and then reads nothing for a while.
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    stalled = socket.create_connection((host, port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET /jobs/{job['job_id']}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    began = time.monotonic()
    readers = [read_stream(client, job["job_id"]) for _ in range(100)]
    results = await asyncio.gather(*readers)
    took = time.monotonic() - began
    for events in results:
        assert chunks(events) == words(count)
    # Now the stalled reader reads: it gets everything too, in order.
    stalled.settimeout(20)
    body = b""
    while b'"status":"finished"' not in body:
        data = stalled.recv(65536)
        assert data, "the stalled reader's stream ended early"
        body += data
    stalled.close()
    got = [
        json.loads(line[len(b"data: ") :])["data"]
        for block in body.split(b"\r\n\r\n")
        if b"event: output" in block
        for line in block.split(b"\r\n")
        if line.startswith(b"data: ")
    ]
    assert got == words(count)
    assert took < 25


@pytest.fixture(scope="module")
def secured(redis_url: str, base_url: str) -> Iterator[ThreadedServer]:
    settings = Settings(redis_url=redis_url, api_keys=("k",), token_secret="s")
    with ThreadedServer(create_app(settings)) as web:
        yield web


async def test_output_follows_the_jobs_access_rules(secured: ThreadedServer) -> None:
    headers = {"Authorization": "Bearer k"}
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        body = {"function": "demo.tokens", "kwargs": {"count": 3, "delay": 0}}
        one = await client.post("/jobs", json=body, headers=headers)
        other = await client.post("/jobs", json=body, headers=headers)
        client.cookies.clear()
        job_id, token = one.json()["job_id"], one.headers["jobhub-token"]
        wrong = other.headers["jobhub-token"]
        for path in (f"/jobs/{job_id}/output", f"/jobs/{job_id}/events"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, params={"token": wrong})).status_code == 403
        page = await client.get(f"/jobs/{job_id}/output", params={"token": token})
        assert page.status_code == 200
