"""Enqueue -> `started` seen on the job's SSE stream, over a real stack, and what it costs.

For each worker poll delay (ARQ's default 0.5 s as the baseline, then jobhub's default),
start Redis, the `arq` CLI worker and uvicorn; measure what the idle worker costs (Redis
commands/s, worker CPU); then, one after another, POST a no-op job, open its stream and time
until a snapshot past `queued` arrives.

    python bench/latency.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobhub.dev.server import RedisServer, Stack  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cost(redis_url: str, worker_pid: int, seconds: float = 3.0) -> tuple[float, float]:
    """Redis commands/s and worker CPU % while nothing is enqueued."""
    client = redis.Redis.from_url(redis_url)
    before = int(client.info("stats")["total_commands_processed"])
    cpu = cpu_seconds(worker_pid)
    time.sleep(seconds)
    commands = int(client.info("stats")["total_commands_processed"]) - before - 1
    cpu = cpu_seconds(worker_pid) - cpu
    client.close()
    return commands / seconds, 100 * cpu / seconds


async def started_latency(base_url: str, jobs: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for _ in range(jobs):
            t0 = time.perf_counter()
            response = await client.post("/jobs", json={"function": "demo.noop"})
            job_id = response.json()["job_id"]
            async with client.stream("GET", f"/jobs/{job_id}/events") as stream:
                async for line in stream.aiter_lines():
                    # Byte-level check: the first data line past queued is started (or later).
                    if line.startswith("data:") and '"status":"queued"' not in line:
                        latencies.append(time.perf_counter() - t0)
                        break
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main(jobs: int) -> None:
    rows = []
    with RedisServer() as server:
        for label, poll in (
            ("ARQ default poll (baseline)", "0.5"),
            ("jobhub default poll", "0.01"),
        ):
            env = {**os.environ, "JOBHUB_POLL_DELAY": poll}
            with Stack(server.url, cwd=str(ROOT), env=env, quiet=True) as stack:
                commands, cpu = idle_cost(server.url, stack.processes[0].pid)
                latencies = asyncio.run(started_latency(stack.base_url, jobs))
            p50, p99 = pct(latencies, 50), pct(latencies, 99)
            rows.append((label, poll, p50, p99, commands, cpu))
            print(f"{label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
    print()
    print(f"enqueue -> `started` on the stream, {jobs} jobs one after another")
    print("| worker poll delay | p50 | p99 | idle worker: Redis commands/s | idle worker CPU |")
    print("|---|---|---|---|---|")
    for label, poll, p50, p99, commands, cpu in rows:
        print(
            f"| {poll} s ({label}) | {p50:.1f} ms | {p99:.1f} ms | {commands:.0f} | {cpu:.1f} % |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    main(parser.parse_args().jobs)
