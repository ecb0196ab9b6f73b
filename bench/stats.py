"""GET /stats with 100,000 jobs in Redis, beside the same call with none and beside a naive
count that reads every job's status: /stats reads counters, so its cost must not grow.

    python bench/stats.py [--jobs 100000] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import msgspec
import redis.asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobhub.core import keys  # noqa: E402
from jobhub.core.snapshot import Status  # noqa: E402
from jobhub.dev.processes import spawn, stop, web_argv  # noqa: E402
from jobhub.dev.server import RedisServer, free_port  # noqa: E402
from jobhub.lifecycle.lifecycle import Lifecycle  # noqa: E402
from jobhub.store.store import Store  # noqa: E402


async def time_stats(base_url: str, calls: int) -> list[float]:
    times = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for _ in range(calls):
            began = time.perf_counter()
            response = await client.get("/stats")
            times.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
    return times


async def fill(lifecycle: Lifecycle, jobs: int) -> None:
    """``jobs`` jobs: a third left queued, a third running, a third finished."""
    store = lifecycle.store
    batch = 500
    for first in range(0, jobs, batch):
        ids = [f"bench-{n}" for n in range(first, min(first + batch, jobs))]
        await asyncio.gather(*(lifecycle.create("bench.noop", [], {}, job_id=j) for j in ids))
        writes = []
        for n, job_id in zip(range(first, first + len(ids)), ids, strict=True):
            if n % 3 >= 1:
                writes.append(store.prepare(job_id, {"status": Status.RUNNING}))
            if n % 3 == 2:
                writes.append(store.prepare(job_id, {"status": Status.FINISHED}))
        await store.write_many(writes)


async def naive_counts(client: redis.asyncio.Redis) -> dict[bytes, int]:
    counts: dict[bytes, int] = {}
    members = await client.zrange(keys.JOBS, 0, -1)
    async with client.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.hget(keys.job_snapshot(msgspec.json.decode(member)), "status")
        for status in await pipe.execute():
            counts[status] = counts.get(status, 0) + 1
    return counts


def line(name: str, times: list[float]) -> str:
    p50 = statistics.median(times) * 1000
    p99 = statistics.quantiles(times, n=100)[98] * 1000 if len(times) > 1 else p50
    return f"  {name:<38} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms"


async def main(jobs: int, calls: int) -> None:
    with RedisServer() as server:
        port = free_port()
        web = spawn(web_argv("127.0.0.1", port), env={"REDIS_URL": server.url}, quiet=True)
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with asyncio.timeout(20), httpx.AsyncClient(base_url=base_url) as probe:
                while True:
                    try:
                        if (await probe.get("/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
            empty = await time_stats(base_url, calls)
            client = redis.asyncio.Redis.from_url(server.url)
            lifecycle = Lifecycle(client, Store(client, result_ttl_seconds=3600), queue_name="b")
            began = time.perf_counter()
            await fill(lifecycle, jobs)
            print(f"{jobs} jobs written in {time.perf_counter() - began:.1f} s")
            full = await time_stats(base_url, calls)
            naive = []
            for _ in range(3):
                t0 = time.perf_counter()
                await naive_counts(client)
                naive.append(time.perf_counter() - t0)
            async with httpx.AsyncClient(base_url=base_url) as last:
                stats = (await last.get("/stats")).json()
            await client.aclose()
        finally:
            stop([web])
    print(f"GET /stats, {calls} calls each (counts at {jobs} jobs: {stats['counts']}):")
    print(line("/stats, no jobs (baseline)", empty))
    print(line(f"/stats, {jobs} jobs", full))
    print(line(f"naive: read every status, {jobs} jobs", naive))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.calls))
