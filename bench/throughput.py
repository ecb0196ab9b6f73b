"""Worker throughput: no-op jobs through jobhub (lifecycle snapshots on) vs raw ARQ.

Same run, same Redis, same worker settings (poll delay, max_jobs, keep_result). Each round
enqueues N jobs, then times one burst worker draining them; rounds alternate between the
two so that drift in the machine hits both alike.

    python bench/throughput.py [--jobs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from typing import Any

from arq.connections import ArqRedis
from arq.worker import create_worker, func

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobhub import Settings, worker_settings
from jobhub.core.snapshot import Snapshot
from jobhub.dev import demo
from jobhub.dev.server import RedisServer
from jobhub.store.store import Store


async def raw_noop(ctx: dict[str, Any]) -> None:
    return None


async def drain(settings: type | dict[str, Any], jobs: int) -> tuple[float, float]:
    """Run one burst worker until the queue is empty: (jobs/s, worker CPU µs per job)."""
    worker = create_worker(settings, burst=True, handle_signals=False)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        await worker.main()
    finally:
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await worker.close()
    return jobs / elapsed, cpu / jobs * 1e6


async def round_jobhub(url: str, jobs: int, max_jobs: int = 10) -> tuple[float, float]:
    settings = Settings(
        redis_url=url, queue_name="bench:" + secrets.token_hex(4), max_jobs=max_jobs
    )
    redis = ArqRedis.from_url(url)
    store = Store(redis, result_ttl_seconds=settings.result_ttl_seconds)
    for _ in range(jobs):  # what POST /jobs does
        job_id = secrets.token_urlsafe(16)
        await store.create(Snapshot.queued(job_id, "demo.noop"))
        await redis.enqueue_job("demo.noop", _job_id=job_id, _queue_name=settings.queue_name)
    await redis.aclose()
    return await drain(worker_settings([demo.noop], settings), jobs)


async def round_raw(url: str, jobs: int, max_jobs: int = 10) -> tuple[float, float]:
    settings = Settings(
        redis_url=url, queue_name="bench:" + secrets.token_hex(4), max_jobs=max_jobs
    )
    redis = ArqRedis.from_url(url)
    for _ in range(jobs):
        await redis.enqueue_job("noop", _queue_name=settings.queue_name)
    await redis.aclose()
    # The very same settings class, with only the function list swapped for a bare one.
    raw = dict(vars(worker_settings([], settings)))
    raw["functions"] = [func(raw_noop, name="noop")]
    del raw["on_startup"]  # jobhub's: it announces functions and sets up the snapshot store
    return await drain(raw, jobs)


async def main(jobs: int, rounds: int, url: str, max_jobs: int) -> None:
    raw: list[tuple[float, float]] = []
    hub: list[tuple[float, float]] = []
    for i in range(rounds):
        raw.append(await round_raw(url, jobs, max_jobs))
        hub.append(await round_jobhub(url, jobs, max_jobs))
        print(
            f"round {i + 1}: raw ARQ {raw[-1][0]:5.0f} jobs/s {raw[-1][1]:4.0f} µs CPU/job   "
            f"jobhub {hub[-1][0]:5.0f} jobs/s {hub[-1][1]:4.0f} µs CPU/job"
        )
    rate = {
        name: statistics.median(r for r, _ in runs) for name, runs in (("raw", raw), ("hub", hub))
    }
    cpu = {
        name: statistics.median(c for _, c in runs) for name, runs in (("raw", raw), ("hub", hub))
    }
    print()
    print(
        f"no-op jobs, {jobs} per round, {rounds} rounds, medians, one worker, max_jobs={max_jobs}"
    )
    print("| worker | jobs/s | worker CPU per job |")
    print("|---|---|---|")
    print(f"| raw ARQ (baseline) | {rate['raw']:.0f} | {cpu['raw']:.0f} µs |")
    print(f"| jobhub, lifecycle snapshots on | {rate['hub']:.0f} | {cpu['hub']:.0f} µs |")
    print(f"jobhub / raw ARQ = {rate['hub'] / rate['raw']:.1%} of the jobs/s (target >= 90%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-jobs", type=int, default=10)
    args = parser.parse_args()
    if os.environ.get("REDIS_URL"):
        asyncio.run(main(args.jobs, args.rounds, os.environ["REDIS_URL"], args.max_jobs))
    else:
        with RedisServer() as server:
            asyncio.run(main(args.jobs, args.rounds, server.url, args.max_jobs))
