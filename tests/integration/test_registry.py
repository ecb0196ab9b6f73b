"""The registry of live workers and the functions they offer, on a real Redis."""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio

from jobhub.core import keys
from jobhub.store.registry import Registry


async def test_a_function_is_offered_only_while_a_worker_beats(
    redis_client: redis.asyncio.Redis,
) -> None:
    registry = Registry(redis_client, lost_after=0.3, queue_name="q:" + secrets.token_hex(4))
    name = "t.fn-" + secrets.token_hex(4)
    assert not await registry.is_offered(name)
    await registry.beat("w-" + secrets.token_hex(4), [name])
    assert await registry.is_offered(name)
    assert name in await registry.live_functions()
    async with asyncio.timeout(5):
        while await registry.is_offered(name):
            await asyncio.sleep(0.05)  # the worker stopped beating: it expires
    assert name not in await registry.live_functions()
    await registry.beat("w-" + secrets.token_hex(4), [name])
    assert await registry.is_offered(name)


async def test_a_lost_worker_rejoins_and_its_jobs_are_claimed_once(
    redis_client: redis.asyncio.Redis,
) -> None:
    registry = Registry(redis_client, lost_after=0.2, queue_name="q:" + secrets.token_hex(4))
    me, other = "w-" + secrets.token_hex(4), "w-" + secrets.token_hex(4)
    await registry.beat(other, [])
    await redis_client.sadd(keys.worker_jobs(other), '"job-a"', '"job-b"')
    await registry.beat(me, [])
    assert other not in await registry.lost_workers(me)
    await redis_client.delete(keys.worker_alive(other))  # as if its beats stopped
    assert other in await registry.lost_workers(me)
    first, second = await asyncio.gather(registry.claim(other), registry.claim(other))
    assert sorted(first + second) == ["job-a", "job-b"]
    await registry.drop(other)
    assert other.encode() not in await redis_client.smembers(keys.WORKERS)
    # It beats again (it was only stalled): it is watched again.
    assert await registry.beat(other, []) == set()
    assert other.encode() in await redis_client.smembers(keys.WORKERS)
