"""Real parts only: a redis-server, the `arq` CLI worker and uvicorn, as subprocesses.

Where REDIS_URL is set the suite uses that Redis; otherwise it starts a private one.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import redis.asyncio
import uvicorn
from arq.worker import Worker
from starlette.applications import Starlette

from jobhub import Settings, create_app
from jobhub.dev.server import RedisServer, Stack, free_port
from jobhub.server.streaming.hub import Hub
from jobhub.store.store import Store

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "test-webhook-secret"
WORKER_METRICS_PORT = free_port()


async def stop_worker(worker: Worker, running: asyncio.Task[None]) -> None:
    """Stop an in-process worker started with ``running = create_task(worker.main())``.

    ARQ's ``close()`` cancels the job tasks still running and re-raises their
    CancelledError, so once no new job can start, let those finish first.
    """
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    async with asyncio.timeout(10):
        while any(not task.done() for task in worker.tasks.values()):
            await asyncio.sleep(0.02)
    await worker.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def base_url(redis_url: str) -> Iterator[str]:
    """The real thing, as documented: the `arq` CLI worker and uvicorn, as subprocesses."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        # Webhooks on, to a receiver in the test process (on loopback), retried quickly.
        "JOBHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "JOBHUB_WEBHOOK_ALLOW_PRIVATE": "true",
        "JOBHUB_WEBHOOK_BACKOFF": "0.1",
        "JOBHUB_WORKER_METRICS_PORT": str(WORKER_METRICS_PORT),
    }
    with Stack(redis_url, cwd=str(ROOT), env=env) as stack:
        yield stack.base_url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis_client: redis.asyncio.Redis) -> Store:
    return Store(redis_client, result_ttl_seconds=3600)


class ThreadedServer:
    """uvicorn serving ``app`` from a thread of the test process, on real sockets.

    Tests reach the server's own event loop through ``call`` to look inside the hub.
    """

    def __init__(self, app: Starlette, log_level: str = "warning") -> None:
        self.app = app
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, port=self.port, log_level=log_level, timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())
        # What outlives the server (sse-starlette's per-loop shutdown watcher) ends here.
        leftovers = asyncio.all_tasks(self.loop)
        for task in leftovers:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.loop.close()

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the server's loop and return its result."""

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.services.hub
        return hub


@pytest.fixture
def threaded(redis_url: str) -> Iterator[ThreadedServer]:
    app = create_app(Settings(redis_url=redis_url, send_timeout_seconds=2))
    with ThreadedServer(app) as server:
        yield server
