"""Live output: what a job pays per entry, and how fast entries reach many watchers.

1. In the worker: a job that writes N chunks as fast as it can (``await job.output(chunk)``
   in a loop), timed from its first chunk until the last one is stored, beside two
   baselines in the same run: a raw redis-py ``XADD`` loop awaited entry by entry (what a
   naive job would do), and the same XADDs sent in one pipeline (the floor of what Redis
   can take).
2. Over the real stack (redis-server, the `arq` CLI worker, uvicorn): W watchers of a job
   writing ``--chunks`` chunks as fast as it can; per received chunk, delivery latency =
   receive time - the entry's ``at``; beside one watcher alone, in the same run.

    python bench/output.py [--entries 10000] [--rounds 3] [--watchers 100] [--chunks 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import redis.asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobhub.core.snapshot import Status, utcnow  # noqa: E402
from jobhub.dev.server import RedisServer, Stack  # noqa: E402
from jobhub.lifecycle.lifecycle import Lifecycle  # noqa: E402
from jobhub.lifecycle.runs import Run  # noqa: E402
from jobhub.store.store import Store  # noqa: E402
from jobhub.store.writes import WriteBatch  # noqa: E402
from jobhub.worker.context import JobContext  # noqa: E402


async def raw_xadd(client: redis.asyncio.Redis, n: int) -> float:
    key = f"bench:raw:{time.monotonic_ns()}"
    began = time.perf_counter()
    for i in range(n):
        entry = msgspec.json.encode({"kind": "output", "data": f"w{i} ", "at": utcnow()})
        await client.xadd(key, {"e": entry}, maxlen=n)
    return time.perf_counter() - began


async def pipelined_xadd(client: redis.asyncio.Redis, n: int) -> float:
    key = f"bench:pipe:{time.monotonic_ns()}"
    began = time.perf_counter()
    async with client.pipeline(transaction=False) as pipe:
        for i in range(n):
            entry = msgspec.json.encode({"kind": "output", "data": f"w{i} ", "at": utcnow()})
            pipe.xadd(key, {"e": entry}, maxlen=n)
        await pipe.execute()
    return time.perf_counter() - began


async def jobhub_output(client: redis.asyncio.Redis, n: int) -> float:
    store = Store(client, result_ttl_seconds=600, output_limit=n)
    lifecycle = Lifecycle(client, store, queue_name=f"bench:{time.monotonic_ns()}")
    job_id, _, _ = await lifecycle.create("bench.output", [], {})
    batch = WriteBatch(store, owner="bench-worker")
    run = Run(batch, job_id, attempt=1, worker_id="bench-worker")
    await run.start("bench.output")
    job = JobContext(run, {})
    began = time.perf_counter()
    for i in range(n):
        await job.output(f"w{i} ")
    # Stored: the job's end is ordered after every entry it wrote.
    await run.finish(None)
    elapsed = time.perf_counter() - began
    assert (await store.read(job_id)).status is Status.FINISHED  # type: ignore[union-attr]
    return elapsed


async def watch(base_url: str, job_id: str, latencies: list[float]) -> int:
    """Read the job's stream to its end; returns the chunks received."""
    received = 0
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=60) as client,
        client.stream("GET", f"/jobs/{job_id}/events") as stream,
    ):
        kind = b""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:].encode()
            elif line.startswith("data: ") and kind == b"output":
                now = datetime.now(UTC)
                at = line[line.index('"at":"') + 6 : line.rindex('"')]
                latencies.append((now - datetime.fromisoformat(at)).total_seconds())
                received += 1
            elif line == "":
                kind = b""
    return received


async def delivery(base_url: str, watchers: int, chunks: int) -> tuple[list[float], int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        # The job starts once every watcher is open: enqueued deferred by a moment.
        body = {"function": "demo.tokens", "kwargs": {"count": chunks, "delay": 0},
                "defer_seconds": 1.0 + watchers / 200}  # fmt: skip
        job_id = (await client.post("/jobs", json=body)).json()["job_id"]
    latencies: list[float] = []
    counts = await asyncio.gather(*(watch(base_url, job_id, latencies) for _ in range(watchers)))
    return latencies, min(counts)


def percentiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return f"p50 {1000 * q[49]:7.1f} ms   p99 {1000 * q[98]:7.1f} ms"


async def main(entries: int, rounds: int, watchers: int, chunks: int) -> None:
    with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        results: dict[str, list[float]] = {"raw XADD, awaited each": [],
                                           "raw XADD, one pipeline": [],
                                           "jobhub job.output()": []}  # fmt: skip
        for _ in range(rounds):
            results["raw XADD, awaited each"].append(await raw_xadd(client, entries))
            results["raw XADD, one pipeline"].append(await pipelined_xadd(client, entries))
            results["jobhub job.output()"].append(await jobhub_output(client, entries))
        await client.aclose()
    print(f"{entries} entries per round, {rounds} rounds, median round (µs per entry):")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"  {name:<24} {1e6 * median / entries:8.2f} µs/entry   ({median:.3f} s)")

    with RedisServer() as server, Stack(server.url, cwd=str(ROOT), quiet=True) as stack:
        print(f"delivery of {chunks} chunks written as fast as the job can:")
        for count in (1, watchers):
            latencies, fewest = await delivery(stack.base_url, count, chunks)
            print(f"  {count:>4} watcher(s): {percentiles(latencies)}   "
                  f"(fewest chunks received by one watcher: {fewest} of {chunks})")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.entries, args.rounds, args.watchers, args.chunks))
