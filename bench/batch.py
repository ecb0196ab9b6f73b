"""Batches, each figure beside its baseline from the same run, on one Redis:

  1. create: one POST /batches of N jobs vs N POST /jobs (32 at a time), the workers
     stopped (SIGSTOP) so that only the creating is measured;
  2. read: GET /batches/{id} latency at 10 and at N children (sequential requests);
  3. write: what a child's transition pays for its batch: µs per snapshot write (a progress
     patch) of jobs in a batch vs jobs in none, as Redis counts the script's time
     (INFO commandstats) and as the client sees a pipelined round of writes;
  4. stream: W watchers of one batch's stream while its N children run (demo.noop): batch
     events per second delivered over all watchers, and staleness (receipt minus the
     snapshot's updated_at) of the batch snapshots received; with every child's events,
     then with ``?jobs=false`` (the batch's snapshots alone, as a bar needs).

    python bench/batch.py [--jobs 10000] [--watchers 1000] [--workers 2]

Everything is real: redis-server, `arq` workers and uvicorn as subprocesses (jobhub.dev).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis.asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobhub.core.snapshot import Snapshot  # noqa: E402
from jobhub.dev.server import RedisServer, Stack  # noqa: E402
from jobhub.lifecycle.arq import ArqQueue  # noqa: E402
from jobhub.store.batches import BatchStore, NewChild  # noqa: E402
from jobhub.store.store import Store  # noqa: E402

NOOP = {"function": "demo.noop"}
ENV = {"JOBHUB_WORKER_LOST_AFTER": "3600", "JOBHUB_MAX_JOBS": "200", "JOBHUB_LOG_LEVEL": "WARNING"}


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.2f} ms"


async def create(base: str, n: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        start = time.perf_counter()
        response = await http.post("/batches", json={"jobs": [NOOP] * n})
        one = time.perf_counter() - start
        assert response.status_code == 202, response.text[:300]
        sem = asyncio.Semaphore(32)

        async def post() -> None:
            async with sem:
                assert (await http.post("/jobs", json=NOOP)).status_code == 202

        start = time.perf_counter()
        await asyncio.gather(*(post() for _ in range(n)))
        many = time.perf_counter() - start
        print(f"create {n:,} jobs: one POST /batches {one:.2f} s   "
              f"vs {n:,} POST /jobs {many:.2f} s  ({many / one:.0f}x)")  # fmt: skip
        small = (await http.post("/batches", json={"jobs": [NOOP] * 10})).json()["batch_id"]
        large = response.json()["batch_id"]
        for label, batch_id in (("10", small), (f"{n:,}", large)):
            times = []
            for _ in range(500):
                start = time.perf_counter()
                assert (await http.get(f"/batches/{batch_id}")).status_code == 200
                times.append(time.perf_counter() - start)
            print(f"GET /batches/{{id}} at {label:>6} children: p50 {ms(times, 0.5)}  "
                  f"p99 {ms(times, 0.99)}")  # fmt: skip


async def write_cost(redis_url: str, n: int = 1000, rounds: int = 10) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushall()
    store = Store(client, result_ttl_seconds=3600)
    batches = BatchStore(client, result_ttl_seconds=3600)
    arq = ArqQueue(client, queue_name="bench:queue")
    plain = [f"p{i}" for i in range(n)]
    for job_id in plain:
        await store.create(Snapshot.queued(job_id, "demo.noop"))
    children = [
        NewChild(Snapshot.queued(f"c{i}", "demo.noop", batch_id="wb"), {},
                 arq.enqueue(f"c{i}", "demo.noop", [], {}, now_ms=0, defer_ms=0))
        for i in range(n)
    ]  # fmt: skip
    await batches.create("wb", children, mode="new", sealed=True, now="2026-01-01T00:00:00Z")
    server = {"none": [], "batch": []}
    client_side = {"none": [], "batch": []}
    for r in range(1, rounds + 1):
        for kind, ids in (("none", plain), ("batch", [f"c{i}" for i in range(n)])):
            writes = [store.prepare(j, {"percent": float(r), "message": "x"}) for j in ids]
            await client.config_resetstat()
            start = time.perf_counter()
            await store.write_many(writes)
            client_side[kind].append((time.perf_counter() - start) / n * 1e6)
            stats = await client.info("commandstats")
            server[kind].append(float(stats["cmdstat_evalsha"]["usec_per_call"]))
    med = {k: statistics.median(v) for k, v in server.items()}
    cli = {k: statistics.median(v) for k, v in client_side.items()}
    print(f"a child's write, Redis's time per script: in a batch {med['batch']:.1f} µs  vs "
          f"in none {med['none']:.1f} µs  (+{med['batch'] - med['none']:.1f} µs)")  # fmt: skip
    print(f"  pipelined, per write as the client sees it: in a batch {cli['batch']:.1f} µs  "
          f"vs in none {cli['none']:.1f} µs")  # fmt: skip
    await client.aclose()


class Watcher(asyncio.Protocol):
    """One SSE client of the batch's stream: counts batch events, their staleness, and job
    events, by scanning bytes (no JSON decoding: the load generator measures the server)."""

    def __init__(self, path: str, totals: dict[str, list[float]]) -> None:
        self.path, self.totals, self.buffer = path, totals, b""
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(f"GET {self.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        *events, self.buffer = self.buffer.split(b"\r\n\r\n")  # sse-starlette ends lines so
        for event in events:
            if b"event: job" in event:
                self.totals["jobs"].append(now)
            elif b'data: {"batch_id"' in event:
                at = event.find(b'"updated_at":"') + 14
                stamp = event[at : event.index(b'"', at)].decode().replace("Z", "+00:00")
                self.totals["stale"].append(now - datetime.fromisoformat(stamp).timestamp())
                self.totals["batch"].append(now)
                if b'"status":"active"' not in event and not self.done.done():
                    self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def stream(stack: Stack, n: int, watchers: int, jobs: bool) -> None:
    workers = stack.processes[:-1]
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120) as http:
        batch_id = (await http.post("/batches", json={"jobs": [NOOP] * n})).json()["batch_id"]
    totals: dict[str, list[float]] = {"batch": [], "stale": [], "jobs": []}
    loop = asyncio.get_running_loop()
    port = urlsplit(stack.base_url).port
    opened = []
    for _ in range(watchers):
        watcher = Watcher(f"/batches/{batch_id}/events?jobs={str(jobs).lower()}", totals)
        await loop.create_connection(lambda w=watcher: w, "127.0.0.1", port)
        opened.append(watcher)
    await asyncio.sleep(1.0)
    for key in totals:
        totals[key].clear()  # what the opens sent: only the run counts
    start = time.time()
    for worker in workers:
        worker.send_signal(signal.SIGCONT)
    await asyncio.wait_for(asyncio.gather(*(w.done for w in opened)), 600)
    took = time.time() - start
    stale = totals["stale"]
    what = "batch and job events" if jobs else "?jobs=false, the batch alone"
    print(f"stream ({what}): {watchers:,} watchers, {n:,} children run in {took:.1f} s: "
          f"{len(totals['batch']) / took:,.0f} batch events/s and "
          f"{len(totals['jobs']) / took:,.0f} job events/s, over all watchers")  # fmt: skip
    print(f"  staleness of batch snapshots: p50 {ms(stale, 0.5)}  p99 {ms(stale, 0.99)}  "
          f"(each watcher got {len(totals['batch']) / watchers:,.0f} batch snapshots)")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    env = {**os.environ, **ENV}
    with RedisServer() as server:
        with Stack(server.url, workers=1, env=env, quiet=True, cwd=str(ROOT)) as stack:
            stack.processes[0].send_signal(signal.SIGSTOP)  # creating only, nothing runs
            try:
                await create(stack.base_url, options.jobs)
            finally:
                stack.processes[0].send_signal(signal.SIGCONT)
        await write_cost(server.url)
    with (
        RedisServer() as server,
        Stack(server.url, workers=options.workers, env=env, quiet=True, cwd=str(ROOT)) as running,
    ):
        await stream(running, options.jobs, options.watchers, jobs=True)
        await stream(running, options.jobs, options.watchers, jobs=False)


if __name__ == "__main__":
    asyncio.run(main())
