"""The archive, measured on a real PostgreSQL (Debian's binaries, started here; durable:
fsync and synchronous_commit on) and a real Redis, in three parts:

1. **Write**: ended jobs per second from the feed into PostgreSQL by the archiver as it
   runs (batches of 200, one transaction each) beside the baseline of one INSERT (and
   one transaction) per job, the same archiver with batches of 1. Each mode gets the same
   jobs, ended through the store's own terminal write (which feeds them), in a fresh
   database.
2. **Lag**: jobs ended at a paced rate (``--rate``, 1,000/s by default) for ``--seconds``
   while ``jobhub archive run`` archives them in its own process; the lag of a job is its
   row's ``archived_at`` minus its ``ended_at``. The achieved rate is printed: a busy
   machine may not reach the one asked for.
3. **Reads**: ``GET /archive/jobs`` and ``GET /archive/stats`` through uvicorn, p50/p99 over
   ``--rows`` archived jobs (1,000,000 by default, bulk-loaded with COPY), with the
   schema's indexes and then without them.

    python bench/archive.py [--rows 1000000] [--jobs 4000] [--rate 1000] [--seconds 10]
                            [--parts write,lag,reads]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec
import redis.asyncio
from sqlalchemy import func, select

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobhub.archive import JOBS, migrate, open_engine
from jobhub.archive.archiver import Archiver, ArchiverOptions
from jobhub.core.snapshot import Snapshot
from jobhub.dev.server import RedisServer, free_port
from jobhub.store.feed import Feed
from jobhub.store.store import Store
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = [f"reports.build_{i}" for i in range(20)]
INDEXES = ("ix_jobs_ended", "ix_jobs_function_ended", "ix_jobs_status_ended")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per write mode")
    parser.add_argument("--rate", type=int, default=1000, help="ended jobs/s for the lag")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=30, help="requests per read query")
    parser.add_argument("--parts", default="write,lag,reads", help="which parts to run")
    options = parser.parse_args()
    parts = options.parts.split(",")
    with PostgresServer() as postgres, RedisServer() as redis_server:
        asyncio.run(durable(postgres))
        print(f"PostgreSQL {postgres.bin}, durable (fsync on, synchronous_commit on)")
        if "write" in parts:
            asyncio.run(write_part(postgres, redis_server.url, options.jobs))
        if "lag" in parts:
            asyncio.run(lag_part(postgres, redis_server.url, options.rate, options.seconds))
        if "reads" in parts:
            reads_part(postgres, redis_server.url, options.rows, options.repeat)


async def durable(postgres: PostgresServer) -> None:
    # The test server runs without fsync; measure what a production database does.
    connection = await asyncpg.connect(host="127.0.0.1", port=postgres.port, user="postgres")
    for setting in ("fsync", "synchronous_commit", "full_page_writes"):
        await connection.execute(f"ALTER SYSTEM SET {setting} = on")
    await connection.execute("SELECT pg_reload_conf()")
    await connection.close()


async def new_database(postgres: PostgresServer, name: str) -> str:
    connection = await asyncpg.connect(host="127.0.0.1", port=postgres.port, user="postgres")
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    url = postgres.url.rsplit("/", 1)[0] + "/" + name
    engine = open_engine(url)
    await migrate(engine)
    await engine.dispose()
    return url


async def end_jobs(store: Store, prefix: str, count: int) -> None:
    """``count`` jobs created and finished through the store (the terminal write feeds them)."""
    for start in range(0, count, 200):
        ids = [f"{prefix}-{i}" for i in range(start, min(start + 200, count))]
        arguments = msgspec.json.encode({"args": [], "kwargs": {"user": 7}})
        # At once, as many web processes would: one round trip's wait for all of them.
        await asyncio.gather(
            *(
                store.create(
                    Snapshot.queued(i, random.choice(FUNCTIONS)), hidden={"arguments": arguments}
                )
                for i in ids
            )
        )
        writes = [store.prepare(i, {"status": "running", "percent": 50.0}) for i in ids]
        writes += [store.prepare(i, {"status": "finished", "percent": 100.0}) for i in ids]
        await store.write_many(writes)


def new_store(client: redis.asyncio.Redis) -> Store:
    return Store(client, result_ttl_seconds=3600, archive_feed_max=1_000_000, archive_on=True)


async def write_part(postgres: PostgresServer, redis_url: str, jobs: int) -> None:
    print(f"\n1. write: {jobs} ended jobs from the feed into PostgreSQL")
    client = redis.asyncio.Redis.from_url(redis_url)
    for label, batch in (("batched archiver (200 a batch)", 200), ("one INSERT per job", 1)):
        await client.flushall()
        url = await new_database(postgres, f"write_{batch}")
        await end_jobs(new_store(client), f"w{batch}", jobs)
        engine = open_engine(url)
        archiver = Archiver(Feed(client), engine, ArchiverOptions(batch_size=batch))
        await archiver.feed.join()
        began = time.perf_counter()
        done = 0
        while done < jobs:
            done += await archiver.step()
        took = time.perf_counter() - began
        async with engine.connect() as connection:
            rows = (await connection.execute(select(func.count()).select_from(JOBS))).scalar_one()
        await engine.dispose()
        assert rows == jobs, (rows, jobs)
        print(f"   {label:32} {jobs / took:8.0f} jobs/s   ({took:.2f} s)")
    await client.aclose()


async def lag_part(postgres: PostgresServer, redis_url: str, rate: int, seconds: float) -> None:
    print(f"\n2. lag: jobs ended at {rate}/s for {seconds:g} s, `jobhub archive run` beside")
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushall()
    url = await new_database(postgres, "lag")
    env = {**os.environ, "REDIS_URL": redis_url, "JOBHUB_ARCHIVE_URL": url}
    command = [str(Path(sys.executable).parent / "jobhub"), "archive", "run"]
    # Started once, before anything is timed.
    archiver = subprocess.Popen(  # noqa: ASYNC220
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    store = new_store(client)
    total = int(rate * seconds)
    step = 0.1  # a tenth of a second's jobs at a time
    began = time.perf_counter()
    for tick in range(int(seconds / step)):
        await end_jobs(store, f"lag{tick}", int(rate * step))
        ahead = began + (tick + 1) * step - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    produced = time.perf_counter() - began
    engine = open_engine(url)
    deadline = time.monotonic() + 120
    while True:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(func.count()).select_from(JOBS))).scalar_one()
        if rows >= total or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    async with engine.connect() as connection:
        found = await connection.execute(select(JOBS.c.archived_at, JOBS.c.ended_at))
        lags = sorted((archived - ended).total_seconds() for archived, ended in found)
    await engine.dispose()
    archiver.terminate()
    archiver.wait(20)
    await client.aclose()
    print(f"   ended {total} jobs at {total / produced:.0f}/s achieved; archived {rows}")
    print(f"   lag p50 {pct(lags, 0.5) * 1000:.0f} ms   p99 {pct(lags, 0.99) * 1000:.0f} ms   "
          f"max {lags[-1] * 1000:.0f} ms")  # fmt: skip


def pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


async def bulk_load(postgres: PostgresServer, rows: int) -> str:
    url = await new_database(postgres, "reads")
    connection = await asyncpg.connect(
        host="127.0.0.1", port=postgres.port, user="postgres", database="reads"
    )
    now = datetime.now(UTC)
    statuses = ["finished"] * 16 + ["failed"] * 3 + ["canceled"]
    rng = random.Random(7)
    columns = [c.name for c in JOBS.columns]
    chunk = 100_000
    for start in range(0, rows, chunk):
        records = []
        for i in range(start, min(start + chunk, rows)):
            ended = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            run = rng.lognormvariate(0, 1)
            status = rng.choice(statuses)
            error = None
            if status == "failed":
                error = msgspec.json.encode({"type": "ValueError", "detail": f"bad {i}"}).decode()
            record = {
                "id": f"bulk-{i:08d}", "function": FUNCTIONS[i % len(FUNCTIONS)], "status": status,
                "tags": f'["user:{i % 1000}"]', "batch": None, "args": "[]",
                "kwargs": f'{{"user": {i % 5000}, "format": "csv"}}', "result": None,
                "error": error, "message": status, "percent": 100.0, "attempt": 1,
                "retry_of": None, "worker": "w1", "seq": 3,
                "created_at": ended - timedelta(seconds=run + 0.1),
                "started_at": ended - timedelta(seconds=run), "ended_at": ended,
                "run_seconds": run, "queued_seconds": 0.1, "archived_at": ended,
            }  # fmt: skip
            records.append(tuple(record[c] for c in columns))
        await connection.copy_records_to_table("jobs", records=records, columns=columns)
    await connection.execute("ANALYZE jobs")
    await connection.close()
    return url


QUERIES = [
    ("/archive/jobs?limit=50", "newest page"),
    ("/archive/jobs?limit=50&cursor={cursor}", "a page 10,000 rows deep"),
    ("/archive/jobs?function=reports.build_3&limit=50", "one function"),
    ("/archive/jobs?status=failed&since=7d&limit=50", "failed, last 7 days"),
    ("/archive/jobs?function=reports.build_3&status=canceled&error=input&limit=50", "+ error text"),
    ("/archive/jobs?tag=user:42&limit=50", "a tag"),
    ("/archive/jobs?arg.user=42&limit=50", "an argument"),
    ("/archive/stats?bucket=hour&since=1d", "stats, 1 day per hour"),
    ("/archive/stats?bucket=hour&function=reports.build_3&since=7d", "stats, 1 function 7 days"),
    ("/archive/stats?bucket=day&since=30d", "stats, 30 days per day (every row)"),
]


def reads_part(postgres: PostgresServer, redis_url: str, rows: int, repeat: int) -> None:
    print(f"\n3. reads: {rows:,} archived jobs, through uvicorn, {repeat} requests a query")
    began = time.perf_counter()
    url = asyncio.run(bulk_load(postgres, rows))
    print(f"   bulk-loaded in {time.perf_counter() - began:.0f} s")
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "JOBHUB_ARCHIVE_URL": url}
    app = "jobhub.server.app:create_app"
    command = [sys.executable, "-m", "uvicorn", "--factory", app, "--port", str(port)]
    web = subprocess.Popen([*command, "--log-level", "warning"], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the web app did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=120) as http:
            cursor = deep_cursor(http)
            for indexed in (True, False):
                if not indexed:
                    asyncio.run(drop_indexes(postgres))
                print(f"   {'with the indexes' if indexed else 'without them'}:")
                for path, what in QUERIES:
                    times = []
                    for _ in range(repeat if indexed else max(3, repeat // 6)):
                        t = time.perf_counter()
                        response = http.get(path.format(cursor=cursor))
                        times.append(time.perf_counter() - t)
                        assert response.status_code == 200, response.text
                    times.sort()
                    print(f"     {what:38} p50 {pct(times, 0.5) * 1000:8.1f} ms"
                          f"   p99 {pct(times, 0.99) * 1000:8.1f} ms")  # fmt: skip
    finally:
        web.terminate()
        web.wait(20)


def deep_cursor(http: httpx.Client) -> str:
    cursor = None
    for _ in range(50):  # 50 pages of 200
        params = {"limit": "200"} | ({"cursor": cursor} if cursor else {})
        cursor = http.get("/archive/jobs", params=params).json()["next_cursor"]
    assert cursor is not None
    return str(cursor)


async def drop_indexes(postgres: PostgresServer) -> None:
    connection = await asyncpg.connect(
        host="127.0.0.1", port=postgres.port, user="postgres", database="reads"
    )
    for index in INDEXES:
        await connection.execute(f"DROP INDEX IF EXISTS {index}")
    await connection.execute("ANALYZE jobs")
    await connection.close()


if __name__ == "__main__":
    main()
