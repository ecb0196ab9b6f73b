"""Past Redis: jobs run by the real stack, archived by ``jobhub archive run``, then Redis
FLUSHALLed; ``GET /jobs/{id}``, ``/history`` and ``/detail`` answer the same from the
archive, with the same auth, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from sqlalchemy import func, select

from jobhub import Settings, create_app
from jobhub.archive import JOBS, migrate, open_engine
from jobhub.client.exits import EXIT
from jobhub.core.snapshot import Status
from jobhub.dev.server import Stack
from tests.support.archive import ArchiverProcess, new_database
from tests.support.archive_rows import insert, job_row, migrated
from tests.support.helpers import TERMINAL
from tests.support.postgres import PostgresServer
from tests.support.servers import ThreadedServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

KEY = "fallback-key"
API = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    postgres = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres_server")
    return new_database(request.param, tmp_path, postgres)


def without_mark(body: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != "archived"}


async def test_a_job_redis_forgot_answers_from_the_archive(
    archive_url: str, start_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    env = {
        "JOBHUB_ARCHIVE_URL": archive_url,
        "JOBHUB_API_KEYS": KEY,
        "JOBHUB_TOKEN_SECRET": "fallback-secret",
    }
    engine = open_engine(archive_url)
    await migrate(engine)
    stack = start_stack(env=env)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
        started = [
            await http.post("/jobs", headers=API, json=body)
            for body in (
                {"function": "demo.count", "kwargs": {"steps": 3, "delay": 0.01}},
                {"function": "demo.fail", "kwargs": {"after": 1, "delay": 0.01}, "tags": ["t:1"]},
            )
        ]
        tokens = {r.json()["job_id"]: r.headers["jobhub-token"] for r in started}

        async def ended(job_id: str) -> dict[str, Any] | None:
            body: dict[str, Any] = (await http.get(f"/jobs/{job_id}", headers=API)).json()
            return body if body["status"] in TERMINAL else None

        live: dict[str, dict[str, Any]] = {}
        for job_id in tokens:
            await wait_until(lambda job_id=job_id: ended(job_id), 30, "the job to end")
            live[job_id] = {
                path: (await http.get(f"/jobs/{job_id}{path}", headers=API)).json()
                for path in ("", "/history", "/detail")
            }

        with ArchiverProcess({**env, "REDIS_URL": stack.redis_url}, log=tmp_path / "a.log"):

            async def archived() -> bool:
                async with engine.connect() as connection:
                    count = await connection.execute(select(func.count()).select_from(JOBS))
                    return count.scalar_one() == len(tokens)

            await wait_until(archived, 30, "the archiver to write both jobs")

        client = redis.asyncio.Redis.from_url(stack.redis_url)
        await client.flushall()
        await client.aclose()

        for job_id, token in tokens.items():
            job = await http.get(f"/jobs/{job_id}", headers=API)
            assert job.status_code == 200, job.text
            assert job.json()["archived"] is True
            assert without_mark(job.json()) == live[job_id][""]
            history = (await http.get(f"/jobs/{job_id}/history", headers=API)).json()
            assert [without_mark(h) for h in history] == live[job_id]["/history"]
            detail = (await http.get(f"/jobs/{job_id}/detail", headers=API)).json()
            assert detail["archived"] is True
            assert detail["arguments"] == live[job_id]["/detail"]["arguments"]
            assert detail["snapshot"] == live[job_id]["/detail"]["snapshot"]
            assert detail["worker"] == live[job_id]["/detail"]["worker"]
            # The same auth: its cookie (this client kept it) and its token still open it,
            # nothing opens it without a credential.
            assert (await http.get(f"/jobs/{job_id}")).status_code == 200
            async with httpx.AsyncClient(base_url=stack.base_url) as stranger:
                assert (await stranger.get(f"/jobs/{job_id}")).status_code == 401
            for path in ("", "/history", "/detail"):
                opened = await http.get(f"/jobs/{job_id}{path}", params={"token": token})
                assert opened.status_code == 200, opened.text
            other = tokens[next(j for j in tokens if j != job_id)]
            assert (await http.get(f"/jobs/{job_id}", params={"token": other})).status_code == 403
        assert (await http.get("/jobs/never-was", headers=API)).status_code == 404
    # The CLI follows an archived job to the end it had, as it follows a live one.
    for job_id in tokens:
        ended_as = live[job_id][""]["status"]
        for mode in ((), ("--json",), ("--output",)):
            cli = [sys.executable, "-m", "jobhub", "--url", stack.base_url, "--api-key", KEY]
            shown = await asyncio.to_thread(
                subprocess.run,
                [*cli, "watch", job_id, *mode],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert shown.returncode == EXIT[Status(ended_as)], (mode, shown.stderr)
            assert "JobNotFound" not in shown.stderr
    await engine.dispose()


async def test_an_archive_not_migrated_yet_is_a_503_and_the_live_api_serves(
    redis_url: str, tmp_path: Path
) -> None:
    # `jobhub dev` starts the web app and the archiver (which migrates) at once.
    settings = Settings(redis_url=redis_url, archive_url=f"sqlite+aiosqlite:///{tmp_path}/a.db")
    with ThreadedServer(create_app(settings)) as web:
        async with httpx.AsyncClient(base_url=web.base_url, timeout=20) as http:
            refused = await http.get("/archive/jobs")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["type"] == "ServiceUnavailable"
            assert (await http.get("/healthz")).status_code == 200
        engine = open_engine(settings.archive_url or "")
        await migrate(engine)
        await engine.dispose()
        async with httpx.AsyncClient(base_url=web.base_url, timeout=20) as http:
            assert (await http.get("/archive/jobs")).json() == {"jobs": [], "next_cursor": None}


async def test_archive_reads_while_postgresql_is_down_are_a_503_and_the_live_api_serves(
    redis_url: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = await asyncio.to_thread(new_database, "postgresql", tmp_path, postgres_server)
    engine = await migrated(url)
    await insert(engine, [job_row("gone-from-redis", status="failed")])
    await engine.dispose()
    settings = Settings(redis_url=redis_url, archive_url=url)
    reads = [
        ("GET", "/archive/jobs", None),
        ("GET", "/archive/stats", None),
        ("POST", "/archive/retry", {"filter": {}}),
        ("GET", "/jobs/gone-from-redis", None),
        ("GET", "/jobs/gone-from-redis/history", None),
        ("GET", "/jobs/never-was", None),  # Redis has none: the archive is asked
    ]
    with ThreadedServer(create_app(settings)) as web:
        async with httpx.AsyncClient(base_url=web.base_url, timeout=20) as http:
            assert (await http.get("/jobs/gone-from-redis")).json()["archived"] is True
            postgres_server.stop()  # its connections are cut, new ones refused
            try:
                for method, path, body in reads:
                    down = await http.request(method, path, json=body)
                    assert down.status_code == 503, (path, down.text)
                    assert down.json()["error"]["type"] == "ServiceUnavailable"
                assert (await http.get("/healthz")).status_code == 200
            finally:
                postgres_server.start()
            back = await http.get("/jobs/gone-from-redis")
            assert back.status_code == 200, back.text
            assert (await http.get("/jobs/never-was")).status_code == 404
