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

from jobhub import Settings, demo, worker_settings
from jobhub.devserver import RedisServer
from jobhub.snapshot import Snapshot
from jobhub.store import Store


async def raw_noop(ctx: dict[str, Any]) -> None:
    return None


async def drain(settings: type | dict[str, Any]) -> float:
    worker = create_worker(settings, burst=True, handle_signals=False)
    started = time.perf_counter()
    try:
        await worker.main()
    finally:
        elapsed = time.perf_counter() - started
        await worker.close()
    return elapsed


async def round_jobhub(url: str, jobs: int, max_jobs: int = 10) -> float:
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
    return jobs / await drain(worker_settings([demo.noop], settings))


async def round_raw(url: str, jobs: int, max_jobs: int = 10) -> float:
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
    return jobs / await drain(raw)


async def main(jobs: int, rounds: int, url: str, max_jobs: int) -> None:
    raw_rates, hub_rates = [], []
    for i in range(rounds):
        raw_rates.append(await round_raw(url, jobs, max_jobs))
        hub_rates.append(await round_jobhub(url, jobs, max_jobs))
        raw_rate, hub_rate = raw_rates[-1], hub_rates[-1]
        print(f"round {i + 1}: raw ARQ {raw_rate:7.0f} jobs/s   jobhub {hub_rate:7.0f} jobs/s")
    raw, hub = statistics.median(raw_rates), statistics.median(hub_rates)
    print()
    print(
        f"no-op jobs, {jobs} per round, {rounds} rounds, medians (one worker, max_jobs={max_jobs})"
    )
    print("| worker | jobs/s |")
    print("|---|---|")
    print(f"| raw ARQ (baseline) | {raw:.0f} |")
    print(f"| jobhub, lifecycle snapshots on | {hub:.0f} |")
    print(f"jobhub / raw ARQ = {hub / raw:.1%}  (target >= 90%)")


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
