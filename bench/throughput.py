"""Worker throughput: no-op jobs through jobhub (lifecycle snapshots on), raw ARQ and SAQ.

Same run, same Redis, one worker with 10 jobs at a time for each. Each round enqueues N jobs,
then times one burst worker draining them; rounds alternate between the queues so that
drift in the machine hits all alike. Besides jobs/s (wall clock, which a shared machine
distorts), each line gives the worker's CPU time per job, the steadier figure, and Redis's
CPU time per job while the worker ran (with how busy that kept Redis): which of the two is
the limit.

  - raw ARQ: jobhub's own ARQ settings (poll delay, max_jobs, ...), a bare function;
  - raw ARQ + one round trip: the same, its function making one script call that does
    nothing, on a held connection: the least that one more round trip per job costs, as
    jobhub's writes (a job's ``started`` and end, one script call) take one;
  - jobhub: ``worker_settings([demo.noop])``, what ``jobhub worker`` runs;
  - jobhub, ARQ keeps results: the same, as jobhub was before its functions told ARQ to
    keep no result of their runs (``--before``, the baseline of that change);
  - SAQ: ``saq.Worker(concurrency=10)`` on its Redis queue, the same no-op function.
    saq is no dependency of jobhub's: ``.venv/bin/pip install -r bench/requirements.txt``
    installs it (without it the SAQ rounds are skipped, saying so).

    python bench/throughput.py [--jobs 2000] [--rounds 3] [--before]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from arq.connections import ArqRedis
from arq.worker import create_worker, func
from redis.asyncio import Redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobhub import Settings, worker_settings
from jobhub.core.snapshot import Snapshot
from jobhub.dev import demo
from jobhub.dev.server import RedisServer
from jobhub.store.connections import writer_client
from jobhub.store.store import Store


class Timed(NamedTuple):
    rate: float
    """Jobs per second, wall clock."""
    cpu: float
    """The worker's CPU time per job, µs."""
    redis: float
    """Redis's CPU time per job while the worker ran, µs: what shows whether the one Redis
    or the worker is the limit."""


Round = Callable[[str, int, int], Awaitable[Timed]]


async def raw_noop(ctx: dict[str, Any]) -> None:
    return None


async def redis_cpu(url: str) -> float:
    """Redis's CPU time so far (user and system), in seconds."""
    redis = Redis.from_url(url)
    try:
        found = await redis.info("cpu")
    finally:
        await redis.aclose()
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


async def drain(settings: type | dict[str, Any], jobs: int, url: str) -> Timed:
    """Run one burst worker until the queue is empty."""
    worker = create_worker(settings, burst=True, handle_signals=False)
    redis = await redis_cpu(url)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        await worker.main()
    finally:
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await worker.close()
    redis = await redis_cpu(url) - redis
    return Timed(jobs / elapsed, cpu / jobs * 1e6, redis / jobs * 1e6)


def _settings(url: str, max_jobs: int) -> Settings:
    return Settings(redis_url=url, queue_name="bench:" + secrets.token_hex(4), max_jobs=max_jobs)


async def _enqueue_jobhub(settings: Settings, jobs: int) -> None:
    redis = ArqRedis.from_url(settings.redis_url)
    store = Store(redis, result_ttl_seconds=settings.result_ttl_seconds)
    for _ in range(jobs):  # what POST /jobs does
        job_id = secrets.token_urlsafe(16)
        await store.create(Snapshot.queued(job_id, "demo.noop"))
        await redis.enqueue_job("demo.noop", _job_id=job_id, _queue_name=settings.queue_name)
    await redis.aclose()


async def round_jobhub(url: str, jobs: int, max_jobs: int = 10) -> Timed:
    settings = _settings(url, max_jobs)
    await _enqueue_jobhub(settings, jobs)
    return await drain(worker_settings([demo.noop], settings), jobs, url)


async def round_jobhub_before(url: str, jobs: int, max_jobs: int = 10) -> Timed:
    """jobhub with ARQ keeping its own copy of each run's result, as before."""
    settings = _settings(url, max_jobs)
    await _enqueue_jobhub(settings, jobs)
    before = dict(vars(worker_settings([demo.noop], settings)))
    before["functions"] = [dataclasses.replace(f, keep_result_s=None) for f in before["functions"]]
    return await drain(before, jobs, url)


async def _bare_arq(
    url: str, jobs: int, max_jobs: int, function: Any
) -> tuple[Settings, dict[str, Any]]:
    """N jobs queued for raw ARQ, and jobhub's very same settings class with only the
    function list swapped for ``function`` (as "noop") and jobhub's startup left out (it
    announces functions and sets up the snapshot store)."""
    settings = _settings(url, max_jobs)
    redis = ArqRedis.from_url(url)
    for _ in range(jobs):
        await redis.enqueue_job("noop", _queue_name=settings.queue_name)
    await redis.aclose()
    bare = dict(vars(worker_settings([], settings)))
    bare["functions"] = [func(function, name="noop")]
    del bare["on_startup"]
    return settings, bare


async def round_raw(url: str, jobs: int, max_jobs: int = 10) -> Timed:
    _, raw = await _bare_arq(url, jobs, max_jobs, raw_noop)
    return await drain(raw, jobs, url)


# The least one more round trip per job costs: a script call of the size of a job's writes
# (its ``started`` and end, one EVALSHA) that does nothing in Redis.
_FLOOR_SCRIPT = "return 1"
_FLOOR_ARGS = [b"jobhub:job:x:snapshot"] * 8 + [b"x" * 40] * 6 + [b"y" * 300] * 2


async def floor_noop(ctx: dict[str, Any]) -> None:
    await ctx["floor"].evalsha(ctx["floor_sha"], 8, *_FLOOR_ARGS)


async def round_floor(url: str, jobs: int, max_jobs: int = 10) -> Timed:
    """Raw ARQ whose function makes one more round trip, as jobhub's writes do, on a held
    connection as jobhub's are: what any design that stores a job's snapshots beside ARQ's
    own round trips costs at least."""
    settings, floor = await _bare_arq(url, jobs, max_jobs, floor_noop)

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["floor"] = writer_client(settings)
        ctx["floor_sha"] = await ctx["floor"].script_load(_FLOOR_SCRIPT)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await ctx["floor"].aclose(close_connection_pool=True)

    floor["on_startup"], floor["on_shutdown"] = on_startup, on_shutdown
    return await drain(floor, jobs, url)


async def round_saq(url: str, jobs: int, max_jobs: int = 10) -> Timed:
    """SAQ's worker, ``concurrency=max_jobs``, timed from its start to its N-th job's end."""
    from saq import Queue, Worker

    # Its stop cancels the workers still waiting for a job, and logs a warning for it.
    logging.getLogger("saq").setLevel(logging.ERROR)

    queue = Queue.from_url(url, name="bench-" + secrets.token_hex(4))
    await queue.connect()
    for _ in range(jobs):
        await queue.enqueue("noop")
    done = asyncio.Event()
    count = 0

    async def noop(ctx: Any) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    worker = Worker(queue, functions=[("noop", noop)], concurrency=max_jobs)
    redis = await redis_cpu(url)
    started, cpu = time.perf_counter(), time.process_time()
    runner = asyncio.create_task(worker.start())
    await done.wait()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    redis = await redis_cpu(url) - redis
    await worker.stop()
    await runner
    await queue.disconnect()
    return Timed(jobs / elapsed, cpu / jobs * 1e6, redis / jobs * 1e6)


def _has_saq() -> bool:
    try:
        import saq  # noqa: F401
    except ImportError:
        return False
    return True


async def main(jobs: int, rounds: int, url: str, max_jobs: int, before: bool) -> None:
    queues: dict[str, Round] = {
        "raw ARQ": round_raw,
        "raw ARQ + one round trip": round_floor,
        "jobhub": round_jobhub,
    }
    if before:
        queues["jobhub, ARQ keeps results"] = round_jobhub_before
    if _has_saq():
        queues["SAQ"] = round_saq
    else:
        print("saq is not installed (pip install -r bench/requirements.txt): no SAQ rounds")
    runs: dict[str, list[Timed]] = {name: [] for name in queues}
    for i in range(rounds):
        # Each round in another order too, so that no queue always runs first.
        order = list(queues)[i % len(queues) :] + list(queues)[: i % len(queues)]
        for name in order:
            runs[name].append(await queues[name](url, jobs, max_jobs))
        line = "   ".join(
            f"{name} {runs[name][-1].rate:5.0f} jobs/s {runs[name][-1].cpu:4.0f} µs"
            for name in queues
        )
        print(f"round {i + 1}: {line}")
    rate = {name: statistics.median(t.rate for t in found) for name, found in runs.items()}
    cpu = {name: statistics.median(t.cpu for t in found) for name, found in runs.items()}
    busy = {name: statistics.median(t.redis for t in found) for name, found in runs.items()}
    spread = {
        name: (min(t.rate for t in found), max(t.rate for t in found))
        for name, found in runs.items()
    }
    print()
    print(f"no-op jobs, {jobs} per round, {rounds} rounds, medians (range), one worker, "
          f"{max_jobs} jobs at a time")  # fmt: skip
    print("| worker | jobs/s | worker CPU per job | Redis CPU per job | Redis busy |")
    print("|---|---|---|---|---|")
    for name in queues:
        low, high = spread[name]
        print(f"| {name} | {rate[name]:.0f} ({low:.0f}-{high:.0f}) | {cpu[name]:.0f} µs "
              f"| {busy[name]:.0f} µs | {busy[name] * rate[name] / 1e6:.0%} |")  # fmt: skip
    hub = rate["jobhub"]
    print(f"jobhub = {hub / rate['raw ARQ']:.1%} of raw ARQ's jobs/s (goal >= 90%); "
          f"CPU per job {cpu['jobhub'] / cpu['raw ARQ']:.2f}x raw ARQ's")  # fmt: skip
    floor = rate["raw ARQ + one round trip"]
    print(f"raw ARQ + one round trip = {floor / rate['raw ARQ']:.1%} of raw ARQ's jobs/s, "
          f"CPU per job {cpu['raw ARQ + one round trip'] - cpu['raw ARQ']:+.0f} µs; "
          f"jobhub = {hub / floor:.1%} of it")  # fmt: skip
    if "SAQ" in rate:
        print(f"jobhub = {hub / rate['SAQ']:.2f}x SAQ's jobs/s (goal >= 1); "
              f"CPU per job {cpu['jobhub'] / cpu['SAQ']:.2f}x SAQ's")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-jobs", type=int, default=10)
    parser.add_argument(
        "--before", action="store_true", help="also jobhub with ARQ keeping results, as before"
    )
    args = parser.parse_args()
    run = (args.jobs, args.rounds)
    if os.environ.get("REDIS_URL"):
        asyncio.run(main(*run, os.environ["REDIS_URL"], args.max_jobs, args.before))
    else:
        with RedisServer() as server:
            asyncio.run(main(*run, server.url, args.max_jobs, args.before))
