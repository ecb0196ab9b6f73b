"""Real parts only: a redis-server, the `arq` CLI worker and uvicorn, as subprocesses.

Where REDIS_URL is set the suite uses that Redis; otherwise it starts a private one.

The tests mirror the package by what they run, and each folder is a marker, so that
``pytest -m unit`` runs one layer alone:

- ``unit/``: no Redis, no server: models, parsing, the source itself.
- ``integration/``: a real redis-server, with jobhub's pieces in the test process (the
  store, an in-process ARQ worker, the app under a ``ThreadedServer``).
- ``system/``: the real stack as it is deployed: ``arq`` CLI workers and uvicorn as
  subprocesses (``base_url``, ``start_stack``), the ``jobhub`` command.
- ``browser/``: the pages and jobhub.js in Chromium.

One fixture per kind of server: ``base_url`` (the session's stack), ``start_stack`` (a
stack of a test's own, with its settings), ``threaded`` (the app in-process, on sockets).
Shared code that is not a fixture lives in tests/support.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio

from jobhub import Settings, create_app
from jobhub.dev.server import RedisServer, Stack
from jobhub.store.store import Store
from tests.support.postgres import PostgresServer
from tests.support.servers import (
    WEBHOOK_SECRET,
    WORKER_METRICS_PORT,
    ThreadedServer,
    running_stack,
)

LAYERS = ("unit", "integration", "system", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the layer its folder names (tests/<layer>/...)."""
    tests = Path(__file__).resolve().parent
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(tests) and (layer := path.relative_to(tests).parts[0]) in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


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
        "PYTHONUNBUFFERED": "1",
        # Webhooks on, to a receiver in the test process (on loopback), retried quickly.
        "JOBHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "JOBHUB_WEBHOOK_ALLOW_PRIVATE": "true",
        "JOBHUB_WEBHOOK_BACKOFF": "0.1",
        "JOBHUB_WORKER_METRICS_PORT": str(WORKER_METRICS_PORT),
    }
    with running_stack(redis_url, env=env) as stack:
        yield stack.base_url


@pytest.fixture
def start_stack() -> Iterator[Callable[..., Stack]]:
    """Start stacks of the test's own, stopped when it ends: ``start_stack(env={...},
    workers=2)`` takes ``running_stack``'s arguments (a private Redis unless given one)."""
    with ExitStack() as stacks:

        def start(redis_url: str | None = None, **options: Any) -> Stack:
            return stacks.enter_context(running_stack(redis_url, **options))

        yield start


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


@pytest.fixture
def threaded(redis_url: str) -> Iterator[ThreadedServer]:
    app = create_app(Settings(redis_url=redis_url, send_timeout_seconds=2))
    with ThreadedServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session (the archive's tests), started on first use."""
    with PostgresServer() as server:
        yield server
