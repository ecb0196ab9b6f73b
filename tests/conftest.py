"""Real parts only: a redis-server, the `arq` CLI worker and uvicorn, as subprocesses.

Where REDIS_URL is set the suite uses that Redis; otherwise it starts a private one.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from jobhub.devserver import RedisServer, free_port
from jobhub.processes import spawn, stop, web_argv, worker_argv
from jobhub.store import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer() as server:
        yield server.url


def stack_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", **extra}


def wait_until(check: object, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def start_worker(redis_url: str, **env: str):  # type: ignore[no-untyped-def]
    """The real ARQ CLI, exactly as documented, from the repository root."""
    return spawn(worker_argv(), env=stack_env(redis_url, **env), cwd=str(ROOT))


def start_web(redis_url: str, port: int, **env: str):  # type: ignore[no-untyped-def]
    argv = web_argv("127.0.0.1", port, "--log-level", "warning")
    proc = spawn(argv, env=stack_env(redis_url, **env), cwd=str(ROOT))
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(base + "/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(lambda: up() or proc.poll() is not None, what="uvicorn")
    assert proc.poll() is None, "uvicorn exited"
    return proc, base


@pytest.fixture(scope="session")
def worker(redis_url: str) -> Iterator[None]:
    sync = redis.Redis.from_url(redis_url)
    sync.delete("jobhub:functions")
    proc = start_worker(redis_url)
    wait_until(lambda: sync.hexists("jobhub:functions", "demo.count"), what="the worker")
    yield
    stop([proc])
    sync.close()


@pytest.fixture(scope="session")
def base_url(redis_url: str, worker: None) -> Iterator[str]:
    proc, base = start_web(redis_url, free_port())
    yield base
    stop([proc])


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
