"""Output the cap dropped before a reader got it is told, never skipped: a slow reader, a
resume from a trimmed id and a page after one each get a gap that counts exactly what was
missed, then the rest in order. And a job cannot store what JSON would not carry as given,
or an entry over ``JOBHUB_OUTPUT_MAX_BYTES``. Real redis-server, uvicorn and ARQ worker."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio
from arq.worker import create_worker
from httpx_sse import aconnect_sse

from jobhub import JobContext, Settings, job, worker_settings
from jobhub.client.client import AsyncClient
from jobhub.client.events import Gap, OutputChunk
from jobhub.core.exceptions import OutputTooLarge
from jobhub.core.snapshot import Status
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.store.store import Store
from tests.support.output import finish, new_job, ordinal, write
from tests.support.servers import stop_worker

WRITTEN = 25_000
CAP = 10_000

Event = tuple[str, str, Any]  # (event name, id, data)


@pytest.fixture
def capped(redis_client: redis.asyncio.Redis) -> Store:
    return Store(redis_client, result_ttl_seconds=600, output_limit=CAP)


@pytest.fixture
async def trimmed(capped: Store) -> tuple[str, list[str]]:
    """A finished job that wrote 25,000 entries, of which the newest 10,000 are kept."""
    job_id = await new_job(capped)
    ids = await write(capped, job_id, 1, WRITTEN)
    await finish(capped, job_id)
    return job_id, ids


async def read_stream(
    client: httpx.AsyncClient, path: str, last_event_id: str | None = None
) -> list[Event]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    async with asyncio.timeout(60):
        async with aconnect_sse(client, "GET", path, headers=headers) as source:
            assert source.response.status_code == 200
            async for sse in source.aiter_sse():
                events.append((sse.event, sse.id, json.loads(sse.data)))
    return events


async def test_each_entry_id_carries_its_ordinal_and_ids_keep_increasing(capped: Store) -> None:
    job_id = await new_job(capped)
    ids = await write(capped, job_id, 1, 2500)
    assert [ordinal(i) for i in ids] == list(range(1, 2501))
    keys = [tuple(map(int, i.split("-"))) for i in ids]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # A later call goes on from the newest id, not from 1.
    [more] = await write(capped, job_id, 2501, 2501)
    assert ordinal(more) == 2501 and tuple(map(int, more.split("-"))) > keys[-1]


async def test_a_resume_from_a_trimmed_id_is_told_the_exact_gap_then_gets_the_rest(
    client: httpx.AsyncClient, trimmed: tuple[str, list[str]]
) -> None:
    job_id, ids = trimmed
    # The client had entry #200 and snapshot 1 when it lost its connection.
    events = await read_stream(client, f"/jobs/{job_id}/events", f"1:{ids[199]}")
    name, event_id, gap = events[0]
    assert name == "gap"
    assert gap["missed"] == 14_800  # #201 … #15000, trimmed before the client got them
    assert ordinal(gap["from"]) == 201 and ordinal(gap["to"]) == 15_000
    assert event_id == f"1:{gap['to']}"  # a reconnect now resumes after the hole
    outputs = [(i, data["data"]["n"]) for name, i, data in events if name == "output"]
    assert [n for _, n in outputs] == list(range(15_001, WRITTEN + 1))
    assert [i for i, _ in outputs] == [f"1:{entry_id}" for entry_id in ids[15_000:]]
    assert events[-1][0] == "message" and events[-1][2]["status"] == "finished"
    assert [name for name, _, _ in events].count("gap") == 1


async def test_a_new_stream_is_told_what_was_trimmed_before_it_came(
    client: httpx.AsyncClient, trimmed: tuple[str, list[str]]
) -> None:
    job_id, _ = trimmed
    events = await read_stream(client, f"/jobs/{job_id}/events")
    assert events[0][0] == "gap" and events[0][2]["missed"] == 15_000
    assert ordinal(events[0][2]["from"]) == 1
    assert len([e for e in events if e[0] == "output"]) == CAP


async def test_a_stream_of_several_jobs_tells_the_gap_under_its_cursor(
    client: httpx.AsyncClient, trimmed: tuple[str, list[str]], capped: Store
) -> None:
    job_id, ids = trimmed
    other = await new_job(capped)
    await write(capped, other, 1, 3)
    await finish(capped, other)
    cursor = f"1:{ids[9_999]}.0"
    events = await read_stream(client, f"/events?jobs={job_id},{other}", cursor)
    gaps = [(i, data) for name, i, data in events if name == "gap"]
    assert len(gaps) == 1
    event_id, gap = gaps[0]
    assert gap["missed"] == 5_000 and event_id == f"1:{gap['to']}.0"
    assert len([e for e in events if e[0] == "output"]) == CAP + 3


async def test_a_page_after_a_trimmed_id_reports_the_gap(
    client: httpx.AsyncClient, trimmed: tuple[str, list[str]]
) -> None:
    job_id, ids = trimmed
    page = (await client.get(f"/jobs/{job_id}/output", params={"after": ids[199]})).json()
    assert page["gap"]["missed"] == 14_800
    assert ordinal(page["gap"]["from"]) == 201 and ordinal(page["gap"]["to"]) == 15_000
    assert [e["data"]["n"] for e in page["entries"]] == list(range(15_001, 15_101))
    assert page["entries"][0]["id"] == ids[15_000]
    # Read on from there: contiguous, so no gap; nor after an id that is still kept.
    after = (await client.get(f"/jobs/{job_id}/output", params={"after": page["next"]})).json()
    assert after["gap"] is None and after["entries"][0]["data"]["n"] == 15_101
    first = (await client.get(f"/jobs/{job_id}/output", params={"after": "0"})).json()
    assert first["gap"]["missed"] == 15_000
    kept = (await client.get(f"/jobs/{job_id}/output", params={"kind": "log"})).json()
    assert kept["entries"] == [] and kept["gap"]["missed"] == 15_000


async def test_a_slow_reader_is_told_exactly_what_it_missed_then_gets_the_rest(
    base_url: str, capped: Store
) -> None:
    job_id = await new_job(capped)
    # A reader that connects and then reads nothing while the job writes 25,000 entries.
    url = urlsplit(base_url)
    stalled = socket.create_connection((url.hostname, url.port))
    # Small, yet above the loopback MSS (64 KiB): a window below it crawls on delayed ACKs.
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    stalled.sendall(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    stalled.settimeout(20)
    head = b""
    while b'"status":"running"' not in head:  # the stream is open and live
        data = stalled.recv(4096)
        assert data, "the stream ended early"
        head += data
    await write(capped, job_id, 1, WRITTEN)
    await finish(capped, job_id)
    body = head
    while b'"status":"finished"' not in body:
        data = await asyncio.to_thread(stalled.recv, 1 << 16)
        assert data, "the slow reader's stream ended early"
        body += data
    stalled.close()
    events: list[tuple[str, dict[str, Any]]] = []
    for block in body.split(b"\r\n\r\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line)
        if fields.get(b"event") in (b"gap", b"output"):
            events.append((fields[b"event"].decode(), json.loads(fields[b"data"])))
    gaps = [i for i, (name, _) in enumerate(events) if name == "gap"]
    assert len(gaps) == 1, "a stalled reader must fall behind the cap here"
    where = gaps[0]
    before = [data["data"]["n"] for _, data in events[:where]]
    missed = events[where][1]["missed"]
    after = [data["data"]["n"] for _, data in events[where + 1 :]]
    assert before == list(range(1, len(before) + 1))
    assert missed == 15_000 - len(before)  # exact: what it had, plus the hole, is all
    assert after == list(range(15_001, WRITTEN + 1))


async def test_the_python_client_yields_the_gap_in_its_place(
    base_url: str, trimmed: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    job_id, _ = trimmed
    async with AsyncClient(base_url) as hub:
        events = [e async for e in hub.events(job_id, output=True)]
        assert isinstance(events[0], Gap) and events[0].missed == 15_000
        chunks = [e.data["n"] for e in events if isinstance(e, OutputChunk)]
        assert chunks == list(range(15_001, WRITTEN + 1))
        gaps: list[Gap] = []
        await hub.wait(job_id, on_output=lambda _: None, on_gap=gaps.append)
        assert [g.missed for g in gaps] == [15_000]
        with caplog.at_level(logging.WARNING, logger="jobhub.client"):
            await hub.wait(job_id, on_output=lambda _: None)
        assert "missed 15000 entries of its output (trimmed)" in caplog.text


async def test_the_command_line_says_what_was_missed_on_stderr(
    base_url: str, trimmed: tuple[str, list[str]]
) -> None:
    job_id, _ = trimmed
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jobhub", "watch", job_id, "--output", "--url", base_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "jobhub: missed 15000 entries (trimmed)" in done.stderr
    assert done.stdout.count('"n":') == CAP


# What JSON would not carry as the job gave it, each somewhere inside a chunk.
UNFAITHFUL: list[Any] = [
    math.nan,
    math.inf,
    [1, {"deep": -math.inf}],
    (1.0, math.nan),
    {math.nan: 1},
    b"bytes",
    bytearray(b"x"),
    {"raw": memoryview(b"x")},
    "lone \ud800 surrogate",
    {"key \udfff": 1},
    [["\ud83d"]],
    object(),
]

LIMIT = 1000


@job("gaps.refused")
async def refused(job: JobContext) -> list[str]:
    outcomes = []

    async def attempt(call: Any) -> None:
        try:
            await call
            outcomes.append("stored")
        except TypeError:
            outcomes.append("TypeError")
        except OutputTooLarge:
            outcomes.append("OutputTooLarge")

    for value in UNFAITHFUL:
        await attempt(job.output(value))
    await attempt(job.log("lone \udc00"))
    await attempt(job.output("y" * LIMIT))  # its JSON is over LIMIT by the entry's fields
    await attempt(job.log("z" * LIMIT))
    await attempt(job.output({"fine": [1.5, "é", "😀", None], "n": 2}))
    await attempt(job.log("fine too"))
    return outcomes


@pytest.fixture
async def lifecycle(redis_url: str) -> AsyncIterator[Lifecycle]:
    settings = Settings(
        redis_url=redis_url,
        queue_name="gaps:" + secrets.token_hex(4),
        output_max_bytes=LIMIT,
        result_ttl_seconds=60,
    )
    worker = create_worker(
        worker_settings([refused], settings), handle_signals=False, poll_delay=0.01
    )
    running = asyncio.create_task(worker.main())
    client = redis.asyncio.Redis.from_url(redis_url)
    store = Store(client, result_ttl_seconds=60)
    yield Lifecycle(client, store, queue_name=settings.queue_name)
    await stop_worker(worker, running)
    await client.aclose()


async def test_values_json_cannot_carry_and_oversized_entries_are_refused_at_the_call(
    lifecycle: Lifecycle,
) -> None:
    job_id, _, _ = await lifecycle.create("gaps.refused", [], {})
    async with asyncio.timeout(20):
        while (final := await lifecycle.store.read(job_id)) is None or not final.is_terminal:
            await asyncio.sleep(0.02)
    assert final.status is Status.FINISHED, final.error
    assert final.result == ["TypeError"] * (len(UNFAITHFUL) + 1) + [
        "OutputTooLarge", "OutputTooLarge", "stored", "stored",
    ]  # fmt: skip
    stored = [json.loads(data) for _, data in await lifecycle.store.output(job_id)]
    assert [e.get("data", e.get("message")) for e in stored] == [
        {"fine": [1.5, "é", "😀", None], "n": 2},
        "fine too",
    ]
