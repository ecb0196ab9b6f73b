"""A worker's snapshot writes go over one connection of its own, closed with the worker."""

from __future__ import annotations

import secrets

import redis.asyncio
from arq.connections import ArqRedis
from arq.worker import create_worker

from jobhub import Settings, worker_settings
from jobhub.core.snapshot import Snapshot, Status
from jobhub.dev import demo
from jobhub.store.store import Store
from jobhub.worker.settings import WRITER


async def _connections(client: redis.asyncio.Redis) -> int:
    return len(await client.client_list())


async def test_writes_share_one_connection_closed_at_shutdown(
    redis_url: str, redis_client: redis.asyncio.Redis, store: Store
) -> None:
    settings = Settings(redis_url=redis_url, queue_name="writer:" + secrets.token_hex(4))
    ids = ["w-" + secrets.token_hex(6) for _ in range(20)]
    arq = ArqRedis.from_url(redis_url)
    for job_id in ids:
        await store.create(Snapshot.queued(job_id, "demo.noop"))
        await arq.enqueue_job("demo.noop", _job_id=job_id, _queue_name=settings.queue_name)
    await arq.aclose()
    before = await _connections(redis_client)

    worker = create_worker(worker_settings([demo.noop], settings), burst=True,
                           handle_signals=False)  # fmt: skip
    try:
        await worker.main()
        writer = worker.ctx[WRITER]
        # Every job's start and end went through it, on its one connection.
        assert writer.connection is not None and writer.connection.is_connected
    finally:
        await worker.close()
    for job_id in ids:
        snapshot = await store.read(job_id)
        assert snapshot is not None and snapshot.status is Status.FINISHED
    # Nothing of the worker's is left connected: neither ARQ's pool nor the writer's.
    assert writer.connection is None
    assert await _connections(redis_client) == before
