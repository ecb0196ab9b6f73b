"""Real parts only: a redis-server, the `arq` CLI worker and uvicorn, as subprocesses.

Where REDIS_URL is set the suite uses that Redis; otherwise it starts a private one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from jobhub.devserver import RedisServer, Stack
from jobhub.store import Store

ROOT = Path(__file__).resolve().parent.parent


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
    with Stack(redis_url, cwd=str(ROOT), env={**os.environ, "PYTHONUNBUFFERED": "1"}) as stack:
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
