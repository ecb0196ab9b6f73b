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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from jobhub.archive import JOBS, PROGRESS, open_engine
from jobhub.core import keys
from jobhub.dev.server import Stack
from jobhub.store.feed import GROUP
from tests.support.archive import BIN, ArchiverProcess, new_database
from tests.support.postgres import PostgresServer
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
        groups = await client.xinfo_groups(keys.ARCHIVE_FEED)
        pending = sum(int(g["pending"]) for g in groups if g["name"].decode() == GROUP)
        return int(await client.xlen(keys.ARCHIVE_FEED)), pending
    finally:
        await client.aclose()


async def test_an_archiver_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    archived_stack: tuple[Stack, dict[str, str]], engine: AsyncEngine, tmp_path: Path
) -> None:
    stack, env = archived_stack
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        # They end with no archiver running: the feed holds them.
        job_ids = await submit(http, [{"function": "demo.noop"}] * 600)
        await ended(http, job_ids)
    assert (await feed_backlog(stack.redis_url))[0] == len(job_ids)
    log = tmp_path / "archiver.log"
    first = ArchiverProcess(env, "--batch-size", "20", "--claim-after", "1", log=log)

    async def some_archived() -> int:
        return await archived_count(engine)

    await wait_until(some_archived, limit=60, what="the first batches")
    first.kill()
    first.stop()
    at_kill = await archived_count(engine)
    assert at_kill < len(job_ids), "it finished before the kill: kill sooner"
    with ArchiverProcess(env, "--batch-size", "20", "--claim-after", "1", log=log):

        async def all_archived() -> bool:
            return await archived_count(engine) >= len(job_ids)

        await wait_until(all_archived, limit=60, what="the rest, claimed and read")
        await wait_until(lambda: _empty(stack.redis_url), limit=30, what="the feed to drain")
    async with engine.connect() as connection:
        ids = (await connection.execute(select(JOBS.c.id))).scalars().all()
    assert sorted(ids) == sorted(job_ids)


async def _empty(redis_url: str) -> bool:
    return await feed_backlog(redis_url) == (0, 0)


@pytest.mark.parametrize("archive_url", ["postgresql"], indirect=True)
async def test_postgresql_down_for_ten_seconds_under_load_loses_nothing(
    archived_stack: tuple[Stack, dict[str, str]],
    engine: AsyncEngine,
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    stack, env = archived_stack
    with ArchiverProcess(env, "--batch-size", "50", log=tmp_path / "archiver.log") as archiver:
        archiver.wait_reading()  # started before PostgreSQL stops: the outage is the point
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:

            async def load() -> list[str]:
                submitted = []
                for _ in range(24):  # about 12 s of jobs ending, across the outage
                    submitted += await submit(http, [{"function": "demo.noop"}] * 20)
                    await asyncio.sleep(0.5)  # paces the load
                return submitted

            loading = asyncio.create_task(load())
            await asyncio.sleep(1)  # some archived before the outage
            postgres_server.stop()
            try:
                await asyncio.sleep(10)  # the outage itself
                backlog, _ = await feed_backlog(stack.redis_url)
                assert backlog > 0  # the feed holds what ended meanwhile
            finally:
                postgres_server.start()
            job_ids = await loading
            await ended(http, job_ids)

            async def all_archived() -> bool:
                return await archived_count(engine) == len(job_ids)

            await wait_until(all_archived, limit=60, what="every job once PostgreSQL is back")
            await wait_until(lambda: _empty(stack.redis_url), limit=30, what="the feed to drain")
    assert "trying again" in (tmp_path / "archiver.log").read_text()


async def test_migrate_is_idempotent_and_the_archiver_refuses_an_unmigrated_database(
    archive_url: str, start_stack: Callable[..., Stack]
) -> None:
    env = {"JOBHUB_ARCHIVE_URL": archive_url}
    refused = jobhub("archive", "run", env=env)
    assert refused.returncode == 1
    assert "run `jobhub archive migrate`" in refused.stderr
    for _ in range(2):
        migrated = jobhub("archive", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "schema revision 0001" in migrated.stdout


def test_jobhub_dev_migrates_and_archives_and_ctrl_c_stops_the_archiver(tmp_path: Path) -> None:
    import signal
    import sys

    from jobhub.dev.server import free_port
    from tests.support.waiting import wait_until_sync

    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobhub", "dev", "--port", str(port)],
        env={**env, "JOBHUB_ARCHIVE_URL": url}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=1).json().get("functions", 0) > 0
            except (httpx.HTTPError, ValueError):
                return proc.poll() is not None

        wait_until_sync(up, limit=60, what="jobhub dev")
        assert proc.poll() is None, "jobhub dev exited early"
        job_id = httpx.post(base + "/jobs", json={"function": "demo.noop"}).json()["job_id"]

        async def archived() -> bool:
            engine = open_engine(url)
            try:  # migrated before the stack started: the table is there from the first
                async with engine.connect() as connection:
                    found = await connection.execute(select(JOBS.c.id))
                    return job_id in found.scalars().all()
            finally:
                await engine.dispose()

        wait_until_sync(lambda: asyncio.run(archived()), limit=30, what="the job archived")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "archiving ended jobs" in out
    assert "not ready" not in out  # the web app never started before the migration
    assert proc.returncode == 0, out


def test_the_production_recipe_runs_as_written(
    postgres_server: PostgresServer, start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    import re
    import signal

    from jobhub.dev.server import free_port
    from tests.support.readme import ROOT
    from tests.support.waiting import wait_until_sync

    page = (ROOT / "docs" / "archive.md").read_text()
    (recipe,) = re.findall(r"```sh\n(.*?)```", page, re.S)
    documented = re.search(r"postgresql\+asyncpg://\S+", recipe)
    assert documented is not None
    # The documented database and port, as this machine has them; the rest as written.
    url = new_database("postgresql", tmp_path, postgres_server)
    port = free_port()
    script = recipe.replace(documented.group(0), url).replace("9108", str(port))
    stack = start_stack(env={"JOBHUB_ARCHIVE_URL": url})
    env = {**os.environ, "REDIS_URL": stack.redis_url, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("JOBHUB_ARCHIVE_URL", None)  # the recipe's export sets it
    proc = subprocess.Popen(
        ["bash", "-ec", script], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        job_id = httpx.post(stack.base_url + "/jobs", json={"function": "demo.noop"}).json()
        job_id = job_id["job_id"]

        async def archived() -> bool:
            engine = open_engine(url)
            try:
                async with engine.connect() as connection:
                    found = await connection.execute(select(JOBS.c.id))
                    return job_id in found.scalars().all()
            except DBAPIError:
                return False  # the recipe's migrate has not run yet
            finally:
                await engine.dispose()

        wait_until_sync(lambda: asyncio.run(archived()) or proc.poll() is not None, limit=60,
                        what="the job archived by the recipe's archiver")  # fmt: skip
        assert proc.poll() is None, "the recipe's archiver exited"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "jobhub_archive_feed_length" in metrics
        assert "jobhub_archive_jobs_archived_total 1.0" in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "schema revision 0001" in out, out


def test_a_database_that_refuses_is_one_line_for_migrate_and_run(
    postgres_server: PostgresServer,
) -> None:
    """A PostgreSQL that answers but refuses (no such database; the same path as "shutting
    down" or "starting up"): once "unexpected DBAPIError" with a page of SQLAlchemy's text."""
    env = {"JOBHUB_ARCHIVE_URL": postgres_server.url.rsplit("/", 1)[0] + "/nowhere"}
    for command in ("migrate", "run"):
        refused = jobhub("archive", command, env=env)
        assert refused.returncode == 1
        assert refused.stderr.splitlines() == [
            'jobhub: the archive\'s database refused: database "nowhere" does not exist'
        ], refused.stderr
