"""A burst of streams opening at once on one web process, with a tiny Redis pool.

Each stream open reads its job's snapshot. Read one by one through a pool of one connection
that gives up after 0.1 s, nine in ten of a burst of 1,000 were refused with 503, and a
browser's EventSource never retries a 503. The reads of streams that open together now
travel in one round trip, and an open waits instead of timing out while Redis is up; it
answers 503 (with Retry-After) only once Redis has stayed unreachable that long.

The server runs in a thread of this process (real uvicorn, real sockets, real Redis); the
clients are raw sockets, opened all at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time

import httpx
import redis.asyncio

from jobhub import Settings, create_app
from jobhub.core.snapshot import Snapshot, Status
from jobhub.dev.server import RedisServer
from jobhub.store.store import Store
from tests.support.servers import ThreadedServer

STREAMS = 1000
JOBS = 50  # streams spread over several jobs, so the hub subscribes while the burst lands


async def open_stream(port: int, job_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return reader, writer


async def test_a_burst_of_streams_on_a_one_connection_pool_all_open_and_all_end(
    redis_url: str, store: Store
) -> None:
    settings = Settings(redis_url=redis_url, redis_max_connections=1, redis_timeout_seconds=0.1)
    with ThreadedServer(create_app(settings)) as web:
        job_ids = [f"burst-{secrets.token_hex(6)}" for _ in range(JOBS)]
        for job_id in job_ids:
            await store.create(Snapshot.queued(job_id, "demo.count"))
        async with asyncio.timeout(60):
            streams = await asyncio.gather(
                *(open_stream(web.port, job_ids[i % JOBS]) for i in range(STREAMS))
            )
            heads = await asyncio.gather(*(reader.readuntil(b"\r\n") for reader, _ in streams))
            refused = [head for head in heads if not head.startswith(b"HTTP/1.1 200 ")]
            assert not refused, f"{len(refused)} of {STREAMS} refused, e.g. {refused[0]!r}"
            # Every stream holds the queued snapshot, under a reconnection delay, before the
            # jobs end: none can get only the final one.
            firsts = await asyncio.gather(
                *(reader.readuntil(b'"status":"queued"') for reader, _ in streams)
            )
            assert all(b"\r\nretry: " in first for first in firsts)
            for job_id in job_ids:
                await store.write(job_id, {"status": Status.FINISHED, "percent": 100.0})
            # The final snapshot, then the end of the chunked body: the stream is over.
            rests = await asyncio.gather(
                *(reader.readuntil(b"\r\n0\r\n\r\n") for reader, _ in streams)
            )
        assert all(b'"status":"finished"' in rest for rest in rests)
        for _, writer in streams:
            writer.close()


async def test_a_stream_open_waits_out_a_redis_restart_and_gets_503_only_when_it_stays_down() -> (
    None
):
    with RedisServer(persist=True) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        store = Store(client, result_ttl_seconds=3600)
        job_id = f"down-{secrets.token_hex(6)}"
        await store.create(Snapshot.queued(job_id, "demo.count"))
        settings = Settings(redis_url=server.url, redis_timeout_seconds=4)
        with ThreadedServer(create_app(settings)) as web:
            # Redis restarts while the stream opens: the open waits for it, then streams.
            server.kill()
            reader, writer = await open_stream(web.port, job_id)
            server.start()
            async with asyncio.timeout(10):
                assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200 ")
                await reader.readuntil(b'"status":"queued"')
            writer.close()

            # Redis stays down: after JOBHUB_REDIS_TIMEOUT, 503 with Retry-After.
            server.kill()
            started = time.monotonic()
            reader, writer = await open_stream(web.port, job_id)
            async with asyncio.timeout(15):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
            assert head.startswith(b"HTTP/1.1 503 "), head
            assert b"\r\nretry-after: " in head.lower()
            assert body["error"]["type"] == "ServiceUnavailable" and body["error"]["detail"]
            assert time.monotonic() - started >= 3  # it waited before giving up
            writer.close()
            server.start()
        await client.aclose()


async def test_requests_to_a_redis_that_stopped_answering_get_503_in_bounded_time() -> None:
    # Redis alive but silent (SIGSTOP: a stalled host, a long fork): no connection error
    # ever comes, so only a read timeout frees the requests holding the pool's connections.
    with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        settings = Settings(redis_url=server.url, redis_timeout_seconds=0.5)
        with ThreadedServer(create_app(settings)) as web:
            pid = int((await client.info("server"))["process_id"])
            await client.aclose()
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                async with httpx.AsyncClient(base_url=web.base_url, timeout=30) as http:
                    answers = await asyncio.gather(
                        *(http.get(f"/jobs/stalled-{i}") for i in range(4))
                    )
                took = time.monotonic() - started
            finally:
                os.kill(pid, signal.SIGCONT)
            async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as http:
                after = await http.get("/jobs/stalled-0")
    assert [a.status_code for a in answers] == [503] * 4, [a.text for a in answers]
    assert took < 10, took  # a few read timeouts and retries, never "for as long as it lasts"
    assert after.status_code == 404  # and once Redis answers again, so does the app
