"""EventStream: sse-starlette through its public API, and nothing process-wide left behind.

Here uvicorn runs in the test's own event loop, in the main thread, as `uvicorn` does from
the command line: it installs its signal handlers there, and that is where sse-starlette's
shutdown watcher finds the server.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette

from jobhub import Settings, create_app
from jobhub.core.snapshot import Snapshot
from jobhub.dev.server import free_port
from jobhub.store.store import Store


def process_wide() -> dict[str, Any]:
    """What sse-starlette or an app could change for the whole process."""
    return {
        "Server.handle_exit": uvicorn.Server.handle_exit,
        "AppStatus.should_exit": AppStatus.should_exit,
        "AppStatus.enable_automatic_graceful_drain": AppStatus.enable_automatic_graceful_drain,
        "SIGTERM": signal.getsignal(signal.SIGTERM),
        "SIGINT": signal.getsignal(signal.SIGINT),
    }


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[uvicorn.Server]:
    # A graceful timeout far longer than the tests' deadlines: streams must end because the
    # server is stopping, not because uvicorn gave up waiting for them.
    config = uvicorn.Config(
        app, port=free_port(), log_level="warning", timeout_graceful_shutdown=60
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "the server did not start"
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await task
        # sse-starlette's shutdown watcher for this loop saw the server exit and is on its
        # way out; it belongs to this test's loop alone, so end it here.
        for leftover in asyncio.all_tasks() - {asyncio.current_task()}:
            if "_shutdown_watcher" in repr(leftover.get_coro()):
                leftover.cancel()


async def open_stream(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await reader.readuntil(b"HTTP/1.1 200 ")
    return reader, writer


async def test_stopping_the_server_ends_its_streams_and_leaves_the_process_as_it_was(
    redis_url: str, store: Store
) -> None:
    before = process_wide()
    job_id = "sse-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    async with serving(create_app(Settings(redis_url=redis_url))) as server:
        port = server.config.port
        streams = [
            await open_stream(port, f"/jobs/{job_id}/events"),
            await open_stream(port, f"/events?jobs={job_id}"),
            await open_stream(port, "/events"),
        ]
        await streams[0][0].readuntil(b'"seq":1')
        assert process_wide()["SIGTERM"] != before["SIGTERM"]  # uvicorn's, while it serves
        # What SIGTERM does, without the signal: every open stream ends, cleanly (the end
        # of its chunked body, not a cut connection), well inside the 60 s uvicorn would
        # wait for them.
        server.should_exit = True
        async with asyncio.timeout(10):
            for reader, writer in streams:
                rest = await reader.read()
                assert rest.endswith(b"\r\n0\r\n\r\n"), rest[-200:]
                writer.close()
    assert process_wide() == before
    left = {task.get_name() for task in asyncio.all_tasks()}
    assert not {name for name in left if name.startswith("jobhub")}, left


async def test_head_on_a_stream_answers_headers_and_releases_the_subscription(
    redis_url: str, store: Store
) -> None:
    job_id = "sse-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "demo.count"))
    app = create_app(Settings(redis_url=redis_url))
    async with serving(app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.config.port)
        writer.write(f"HEAD /jobs/{job_id}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"text/event-stream" in head
            while app.state.services.hub.subscribed_jobs:
                await asyncio.sleep(0.01)
        writer.close()
