"""The archive, end to end, against SQLite and a real PostgreSQL: jobs run by the real stack
(uvicorn, the ``arq`` CLI worker, Redis) and archived by ``jobhub archive run``.

Each test gets a stack of its own (a private Redis) and an empty database.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobhub.archive import JOBS, PROGRESS, open_engine
from jobhub.core import keys
from jobhub.dev.server import Stack
from jobhub.store.feed import GROUP
from tests.support.archive import BIN, ArchiverProcess, new_database
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    postgres = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres_server")
    return new_database(request.param, tmp_path, postgres)


def jobhub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "jobhub"), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture
def archived_stack(
    archive_url: str, start_stack: Callable[..., Stack]
) -> Iterator[tuple[Stack, dict[str, str]]]:
    env = {"JOBHUB_ARCHIVE_URL": archive_url, "JOBHUB_MAX_JOBS": "50"}
    migrated = jobhub("archive", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    stack = start_stack(env=env)
    yield stack, {**env, "REDIS_URL": stack.redis_url}


@pytest.fixture
async def engine(archive_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_engine(archive_url)
    yield engine
    await engine.dispose()


async def archived_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(JOBS))).scalar_one())


async def submit(http: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[str]:
    """POST each body, a few at once; the job ids in order."""
    gate = asyncio.Semaphore(16)

    async def one(body: dict[str, Any]) -> str:
        async with gate:
            response = await http.post("/jobs", json=body)
            assert response.status_code == 202, response.text
            return str(response.json()["job_id"])

    return list(await asyncio.gather(*(one(body) for body in bodies)))


async def ended(http: httpx.AsyncClient, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Wait until every job has ended; their final snapshots."""
    final: dict[str, dict[str, Any]] = {}
    gate = asyncio.Semaphore(16)

    async def check(job_id: str) -> None:
        async with gate:
            snapshot = (await http.get(f"/jobs/{job_id}")).json()
            if snapshot["status"] in ("finished", "failed", "canceled"):
                final[job_id] = snapshot

    async def all_ended() -> bool:
        await asyncio.gather(*(check(j) for j in job_ids if j not in final))
        return len(final) == len(job_ids)

    await wait_until(all_ended, limit=120, what="every job to end", interval=0.3)
    return final


async def mixed_jobs(http: httpx.AsyncClient, total: int) -> list[str]:
    """``total`` jobs: finished, failed, canceled and retried ones (a retry of a failed job,
    which fails again), as an operator's week would have them."""
    failing = total // 8
    retried = total // 20
    canceled = total // 10
    finishing = total - failing - retried - canceled
    fail = {"function": "demo.fail", "kwargs": {"after": 1, "delay": 0.01}}
    ids = await submit(http, [{"function": "demo.noop", "tags": ["archive"]}] * finishing
                       + [fail] * failing)  # fmt: skip
    # Deferred, then canceled while still queued.
    later = {"function": "demo.noop", "defer_seconds": 3600}
    deferred = await submit(http, [later] * canceled)
    for job_id in deferred:
        assert (await http.post(f"/jobs/{job_id}/cancel")).status_code == 200
    failed = list(await ended(http, ids[finishing:]))
    retries = []
    for job_id in failed[:retried]:
        response = await http.post(f"/jobs/{job_id}/retry")
        assert response.status_code == 202, response.text
        retries.append(response.json()["job_id"])
    return ids + deferred + retries


async def test_every_ended_job_is_archived_once_with_its_history(
    archived_stack: tuple[Stack, dict[str, str]], engine: AsyncEngine, tmp_path: Path
) -> None:
    stack, env = archived_stack
    with ArchiverProcess(env, log=tmp_path / "archiver.log"):
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
            job_ids = await mixed_jobs(http, 1000)
            final = await ended(http, job_ids)

            async def all_archived() -> bool:
                return await archived_count(engine) == len(job_ids)

            await wait_until(all_archived, limit=60, what="every job in the archive")
            async with engine.connect() as connection:
                rows = {row.id: row for row in (await connection.execute(select(JOBS))).all()}
                events = (await connection.execute(
                    select(PROGRESS.c.job_id, PROGRESS.c.snapshot).order_by(
                        PROGRESS.c.job_id, PROGRESS.c.seq)
                )).all()  # fmt: skip
            assert set(rows) == set(job_ids)  # one row each (the id is the key), none else
            statuses = {row.status for row in rows.values()}
            assert statuses == {"finished", "failed", "canceled"}
            for job_id, snapshot in final.items():
                row = rows[job_id]
                assert (row.status, row.function, row.seq) == (
                    snapshot["status"], snapshot["function"], snapshot["seq"],
                )  # fmt: skip
                assert row.error == snapshot["error"] and row.retry_of == snapshot["retry_of"]
                assert row.tags == snapshot["tags"]
            assert sum(1 for row in rows.values() if row.retry_of) == 1000 // 20
            assert all(row.worker for row in rows.values() if row.status == "finished")
            # The history of each, as Redis holds it (what /history answers) ...
            history: dict[str, list[Any]] = {}
            for job_id, snapshot in events:
                history.setdefault(job_id, []).append(snapshot)
            client = redis.asyncio.Redis.from_url(stack.redis_url)
            async with client.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.lrange(keys.job_history(job_id), 0, -1)
                stored = await pipe.execute()
            await client.aclose()
            for job_id, entries in zip(job_ids, stored, strict=True):
                assert history[job_id] == [msgspec.json.decode(e) for e in entries], job_id
            # ... and as /history answers it, for a few of each kind.
            for job_id in job_ids[:5] + job_ids[-60:-50] + job_ids[-5:]:
                answered = (await http.get(f"/jobs/{job_id}/history")).json()
                assert history[job_id] == answered, job_id
            assert await feed_backlog(stack.redis_url) == (0, 0)


async def feed_backlog(redis_url: str) -> tuple[int, int]:
    """Entries in the feed, and entries pending in the archivers' group."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        pending = await client.xpending(keys.ARCHIVE_FEED, GROUP)
        return int(await client.xlen(keys.ARCHIVE_FEED)), int(pending["pending"])
    finally:
        await client.aclose()
