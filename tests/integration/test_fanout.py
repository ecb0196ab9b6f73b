"""The push path at scale: one subscriber per process, conflation, Redis restarts.

The server runs in a thread of this process (real uvicorn, real sockets, real Redis) so the
tests can look inside its hub; snapshots are written with the Store, as a worker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio
from httpx_sse import aconnect_sse

from jobhub import Settings, create_app
from jobhub.core import keys
from jobhub.core.snapshot import Snapshot, Status
from jobhub.dev.server import RedisServer
from jobhub.server.streaming.frames import Frame
from jobhub.server.streaming.hub import Hub
from jobhub.server.streaming.watch import Watch
from jobhub.store.store import Store
from tests.support.servers import ThreadedServer
from tests.support.waiting import wait_until


async def new_job(store: Store) -> str:
    job_id = "f-" + secrets.token_hex(8)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    return job_id


async def collect(
    client: httpx.AsyncClient,
    path: str,
    into: list[dict],
    opened: asyncio.Event | None = None,  # type: ignore[type-arg]
) -> None:
    async with aconnect_sse(client, "GET", path) as source:
        async for event in source.aiter_sse():
            if opened is not None:
                opened.set()
            into.append(json.loads(event.data))


async def test_concurrent_first_subscribers_both_get_every_update(
    threaded: ThreadedServer, store: Store
) -> None:
    async with httpx.AsyncClient(base_url=threaded.base_url, timeout=10) as client:
        for _ in range(10):
            job_id = await new_job(store)
            streams: list[list[dict]] = [[], []]  # type: ignore[type-arg]
            tasks = [
                asyncio.create_task(collect(client, f"/jobs/{job_id}/events", events))
                for events in streams
            ]  # opened in the same instant: both race to be first for this job
            while not all(streams):
                await asyncio.sleep(0.005)
            for i in range(1, 4):
                await store.write(job_id, {"status": Status.RUNNING, "percent": 25.0 * i})
                await asyncio.sleep(0.02)
            await store.write(job_id, {"status": Status.FINISHED, "percent": 100.0})
            async with asyncio.timeout(5):
                await asyncio.gather(*tasks)
            for events in streams:
                assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]


async def test_connect_disconnect_cycles_leave_no_subscription_and_no_task(
    threaded: ThreadedServer, store: Store, redis_client: redis.asyncio.Redis
) -> None:
    job_ids = [await new_job(store) for _ in range(10)]

    async def cycle(i: int) -> None:
        # Open a stream, read its first event, hang up: what a closed browser tab does.
        reader, writer = await asyncio.open_connection("127.0.0.1", threaded.port)
        job_id = job_ids[i % len(job_ids)]
        writer.write(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        await writer.drain()
        await reader.readuntil(b'"seq":')
        writer.close()
        await writer.wait_closed()

    # sse-starlette starts one shutdown watcher task per event loop with the first stream
    # and keeps it; count tasks from after that.
    await cycle(0)
    await wait_until(
        lambda: not threaded.call(lambda: threaded.hub.subscribed_jobs), what="the first close"
    )
    baseline = threaded.call(lambda: len(asyncio.all_tasks()))
    semaphore = asyncio.Semaphore(25)

    async def bounded(i: int) -> None:
        async with semaphore:
            await cycle(i)

    await asyncio.gather(*(bounded(i) for i in range(1000)))

    async with asyncio.timeout(10):
        while (
            threaded.call(lambda: threaded.hub.subscribed_jobs)
            or threaded.call(lambda: len(asyncio.all_tasks())) > baseline
        ):
            await asyncio.sleep(0.05)
    counts = await redis_client.pubsub_numsub(*(keys.job_channel(j) for j in job_ids))
    assert [count for _, count in counts] == [0] * len(job_ids)
    assert await redis_client.pubsub_channels(keys.PREFIX + "*") == []


async def test_a_stalled_reader_does_not_delay_a_fast_one_and_is_cut_off(
    threaded: ThreadedServer, store: Store
) -> None:
    job_id = await new_job(store)
    # The stalled client: a socket with a tiny receive buffer that is never read.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", threaded.port))
    stalled.sendall(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())

    fast: list[dict] = []  # type: ignore[type-arg]
    opened = asyncio.Event()
    async with httpx.AsyncClient(base_url=threaded.base_url, timeout=10) as client:
        task = asyncio.create_task(collect(client, f"/jobs/{job_id}/events", fast, opened))
        await opened.wait()
        big = "x" * 60_000  # a few of these fill every buffer between server and stalled
        for i in range(1, 60):
            await store.write(job_id, {"status": Status.RUNNING, "percent": i, "message": big})
            await asyncio.sleep(0.005)
        await store.write(job_id, {"status": Status.FINISHED, "percent": 100.0})
        async with asyncio.timeout(10):
            await task  # ends with the final snapshot, though the stalled reader is stuck
    assert fast[-1]["status"] == "finished"
    assert [e["seq"] for e in fast] == sorted({e["seq"] for e in fast})

    # The stalled stream's send is stuck past JOBHUB_SEND_TIMEOUT (2 s here): it is ended,
    # so once the client drains its socket it meets the end of the connection.
    stalled.settimeout(10)
    received = 0
    while chunk := stalled.recv(1 << 20):
        received += len(chunk)
    stalled.close()
    assert 0 < received < 60 * 60_000  # it got some, and was never queued all of it


async def test_output_entries_on_a_jobs_channel_reach_its_streams_in_order(
    threaded: ThreadedServer, store: Store
) -> None:
    # A job's log lines and chunks are published on its channel too, between its
    # snapshots: the stream carries them where they were published.
    job_id = await new_job(store)
    events: list[dict] = []  # type: ignore[type-arg]
    opened = asyncio.Event()
    async with httpx.AsyncClient(base_url=threaded.base_url, timeout=10) as client:
        task = asyncio.create_task(collect(client, f"/jobs/{job_id}/events", events, opened))
        await opened.wait()
        entry = {"kind": "log", "level": "info", "message": "hello", "at": "now"}
        await store.write_many([store.prepare_entry(job_id, entry, run=None, owner=None)])
        await store.write(job_id, {"status": Status.FINISHED})
        async with asyncio.timeout(5):
            await task
    assert [e.get("status") or e["message"] for e in events] == ["queued", "hello", "finished"]


async def test_a_slow_watch_holds_only_the_newest_snapshot(redis_url: str, store: Store) -> None:
    """Conflation, and one encoding per published snapshot however many watch it."""
    client = redis.asyncio.Redis.from_url(redis_url)
    hub = Hub(client.connection_pool.make_connection, store.get_many)
    await hub.start()
    try:
        job_id = await new_job(store)
        watches: list[Watch] = [(await hub.watch([job_id]))[0] for _ in range(50)]
        # A watch that reads as the hub delivers: the hub offers a snapshot to every watch
        # of its job in one step, so once this one has the last, the 50 others hold it too.
        probe = (await hub.watch([job_id]))[0]
        for i in range(1, 21):
            await store.write(job_id, {"status": Status.RUNNING, "percent": float(i)})
        await store.write(job_id, {"status": Status.FINISHED})
        async with asyncio.timeout(5):
            while not any(isinstance(u, Frame) and u.seq == 22 for u in await probe.next()):
                pass
        probe.close()
        # Every publish has reached the hub; none of the 50 has read.
        delivered = [await w.next() for w in watches]
        for frames in delivered:
            assert len(frames) == 1 and frames[0].seq == 22 and frames[0].terminal
        assert len({id(frames[0]) for frames in delivered}) == 1  # one Frame, shared
        for watch in watches:
            watch.close()
        assert hub.subscribed_jobs == 0
    finally:
        await hub.aclose()
        await client.aclose()


@contextlib.asynccontextmanager
async def on_restartable_redis() -> AsyncIterator[tuple[RedisServer, Store, httpx.AsyncClient]]:
    """The app on a Redis that the test kills and starts again, its data kept on disk: the
    server, a Store on it (as a worker writes), and a client of the app."""
    with RedisServer(persist=True) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        app = create_app(Settings(redis_url=server.url, redis_timeout_seconds=10))
        try:
            with ThreadedServer(app) as web:
                async with httpx.AsyncClient(base_url=web.base_url, timeout=30) as http:
                    yield server, Store(client, result_ttl_seconds=3600), http
        finally:
            await client.aclose()


async def test_stream_survives_redis_being_killed_and_restarted() -> None:
    events: list[dict] = []  # type: ignore[type-arg]
    async with on_restartable_redis() as (server, store, http):
        job_id = await new_job(store)
        opened = asyncio.Event()
        stream = collect(http, f"/jobs/{job_id}/events", events, opened)
        task = asyncio.create_task(stream)
        await opened.wait()
        for i in range(1, 4):
            await store.write(job_id, {"status": Status.RUNNING, "percent": float(i)})
        async with asyncio.timeout(5):
            while len(events) < 4:
                await asyncio.sleep(0.01)

        server.kill()
        server.start()
        # Written before the hub has subscribed again: pub/sub drops these, so only
        # the re-read after resubscribing can deliver them.
        await write_retrying(store, job_id, {"status": Status.RUNNING, "percent": 50.0})
        await write_retrying(store, job_id, {"status": Status.RUNNING, "percent": 60.0})
        # Paces the last write to after the hub has most likely subscribed again; the
        # stream must end with it whichever path carries it.
        await asyncio.sleep(0.5)
        await write_retrying(store, job_id, {"status": Status.FINISHED, "percent": 100.0})
        async with asyncio.timeout(15):
            await task
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "a seq went backwards or repeated"
    assert seqs[:4] == [1, 2, 3, 4]
    assert events[-1]["status"] == "finished" and seqs[-1] == 7


async def write_retrying(store: Store, job_id: str, patch: dict) -> None:  # type: ignore[type-arg]
    for _ in range(50):
        try:
            await store.write(job_id, patch)
            return
        except redis.exceptions.ConnectionError:
            await asyncio.sleep(0.05)
    pytest.fail("Redis did not come back")


async def test_idle_stream_gets_heartbeat_comments(redis_url: str, store: Store) -> None:
    app = create_app(Settings(redis_url=redis_url, heartbeat_seconds=0.4))
    with ThreadedServer(app) as web:
        job_id = await new_job(store)
        reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
        writer.write(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        async with asyncio.timeout(5):
            await reader.readuntil(b'"seq":1')
            await reader.readuntil(b": heartbeat")
            await reader.readuntil(b": heartbeat")  # and again, while nothing happens
            await store.write(job_id, {"status": Status.FINISHED})
            rest = await reader.readuntil(b'"seq":2')
        assert b'"status":"finished"' in rest
        writer.close()
        assert web.call(lambda: len(web.app.state.services.streams)) <= 1


async def test_cors_answers_allowed_origins_and_only_them(redis_url: str) -> None:
    app = create_app(Settings(redis_url=redis_url, cors_origins=("https://app.example",)))
    with ThreadedServer(app) as web:
        async with httpx.AsyncClient(base_url=web.base_url) as client:
            preflight = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            }
            allowed = await client.options(
                "/jobs", headers={"Origin": "https://app.example", **preflight}
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://app.example"
            assert allowed.headers["access-control-allow-credentials"] == "true"
            refused = await client.options(
                "/jobs", headers={"Origin": "https://evil.example", **preflight}
            )
            assert refused.status_code == 400
            assert "access-control-allow-origin" not in refused.headers
            simple = await client.get("/jobs/nope", headers={"Origin": "https://app.example"})
            assert simple.headers["access-control-allow-origin"] == "https://app.example"
            assert "ETag" in simple.headers["access-control-expose-headers"]


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """What a stream sends until its response ends (the end of its chunked body)."""
    return await reader.readuntil(b"\r\n0\r\n\r\n")


async def test_streams_of_jobs_redis_lost_end_with_an_error_and_reconnects_get_404() -> None:
    with RedisServer() as server:  # no persistence: a restart comes back empty
        client = redis.asyncio.Redis.from_url(server.url)
        store = Store(client, result_ttl_seconds=3600)
        app = create_app(Settings(redis_url=server.url, redis_timeout_seconds=10))
        with ThreadedServer(app) as web:
            lost, ended = await new_job(store), await new_job(store)
            await store.write(ended, {"status": Status.FINISHED})
            one = await asyncio.open_connection("127.0.0.1", web.port)
            one[1].write(f"GET /jobs/{lost}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            many = await asyncio.open_connection("127.0.0.1", web.port)
            request = f"GET /events?jobs={lost},{ended} HTTP/1.1\r\nHost: t\r\n\r\n"
            many[1].write(request.encode())
            async with asyncio.timeout(5):
                await one[0].readuntil(b'"status":"queued"')
                # Both jobs' snapshots, in the order listed: the lost job's, then the other's.
                first = await many[0].readuntil(b'"status":"finished"')
                assert b'"status":"queued"' in first

            server.kill()
            server.start()  # empty: both jobs are gone
            async with asyncio.timeout(15):
                rest_one = await read_to_end(one[0])
                rest_many = await read_to_end(many[0])
            for _, writer in (one, many):
                writer.close()
            error = {"type": "JobNotFound", "detail": f"no job '{lost}'", "job_id": lost}
            gone = json.dumps({"error": error}, separators=(",", ":"))
            assert f"event: error\r\ndata: {gone}\r\n".encode() in rest_one
            # The stream of two: the lost job's error, none for the job that had ended.
            assert rest_many.count(b"event: error") == 1
            assert gone.encode() in rest_many

            async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as http:
                again = await http.get(f"/jobs/{lost}/events")
                assert again.status_code == 404
                assert again.json()["error"]["type"] == "JobNotFound"
                again_many = await http.get(f"/events?jobs={lost},{ended}")
                assert again_many.status_code == 404
            assert web.call(lambda: web.hub.subscribed_jobs) == 0
        await client.aclose()


async def test_the_all_jobs_stream_forgets_each_job_once_it_ended(
    threaded: ThreadedServer, store: Store
) -> None:
    jobs = 10_000
    reader, writer = await asyncio.open_connection("127.0.0.1", threaded.port)
    writer.write(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
    finished = 0
    tail = b""
    marker = b'"status":"finished"'

    async def drain() -> None:
        nonlocal finished, tail
        while chunk := await reader.read(1 << 16):
            data = tail + chunk
            finished += data.count(marker)
            tail = data[-(len(marker) - 1) :]

    async with asyncio.timeout(5):
        await reader.readuntil(b"HTTP/1.1 200 ")
        while not threaded.call(lambda: len(threaded.app.state.services.streams)):
            await asyncio.sleep(0.01)
    draining = asyncio.create_task(drain())

    def held() -> list[int]:
        return [stream.watch.held_jobs for stream in threaded.app.state.services.streams]

    prefix = "mem-" + secrets.token_hex(4)
    most = 0
    for first in range(0, jobs, 500):
        ids = [f"{prefix}-{i}" for i in range(first, first + 500)]
        await asyncio.gather(*(store.create(Snapshot.queued(i, "demo.count")) for i in ids))
        await store.write_many([store.prepare(i, {"status": Status.FINISHED}) for i in ids])
        most = max(most, *threaded.call(held))
    async with asyncio.timeout(60):
        while finished < jobs:
            await asyncio.sleep(0.05)
    # Every job's final snapshot reached the stream (none twice), and the stream keeps
    # nothing of the jobs that ended: it held 10,000 entries here before.
    assert finished == jobs
    assert threaded.call(held) == [0]
    assert most < jobs / 2  # what it held meanwhile: only what it had yet to send
    draining.cancel()
    writer.close()


async def test_the_stream_of_every_job_resyncs_after_redis_restarts() -> None:
    events: list[dict] = []  # type: ignore[type-arg]
    async with on_restartable_redis() as (server, store, http):
        job_id = await new_job(store)
        task = asyncio.create_task(collect(http, "/events", events))
        # The stream carries what is published once it has subscribed: write until
        # a snapshot of the job comes through.
        async with asyncio.timeout(10):
            for percent in range(1, 100):
                await write_retrying(store, job_id, {"status": Status.RUNNING, "percent": percent})
                await asyncio.sleep(0.1)
                if any(e["job_id"] == job_id for e in events):
                    break
        before = sum(e["job_id"] == job_id for e in events)
        server.kill()
        server.start()
        # Nothing is written after the restart: what arrives now is the resync (the
        # newest jobs' snapshots read again), which would carry anything that
        # changed while the connection was down.
        async with asyncio.timeout(15):
            while sum(e["job_id"] == job_id for e in events) <= before:
                await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
