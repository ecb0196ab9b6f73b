"""The archive's reads over HTTP, on SQLite and PostgreSQL: filters, keyset pages while rows
arrive, stats, bulk retry, auth on every endpoint, and hostile query strings.

The archive's rows are written straight into its tables (tests/support/archive_rows.py), so
that every answer has one right value; the web app is real (uvicorn on sockets, the
session's Redis), and so is the ARQ worker that runs what a bulk retry starts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from jobhub import AsyncClient, Settings, create_app
from jobhub.archive.schema import JOBS as JOBS_TABLE
from jobhub.archive.schema import PROGRESS
from jobhub.archive.stats import percentile
from jobhub.lifecycle.lifecycle import retry_id
from jobhub.server.auth import Tokens
from tests.support.archive import new_database
from tests.support.archive_rows import BASE, insert, job_row, migrated
from tests.support.helpers import TERMINAL
from tests.support.servers import ThreadedServer, running_stack
from tests.support.waiting import wait_until

KEY = "archive-test-key"
SECRET = "archive-test-secret"
API = {"Authorization": f"Bearer {KEY}"}
FUNCTIONS = ("reports.build", "exports.csv", "demo.noop")
STATUSES = ("finished", "failed", "canceled")
JOBS = 60
BOUND = 1005


def sample(i: int) -> dict[str, Any]:
    """The i-th job of the data set: a function, status, tag and arguments in rotation,
    ending a minute after the one before."""
    status = STATUSES[i % 3]
    function = FUNCTIONS[(i // 3) % 3]
    arguments = {"user": i % 5, "options": {"format": "csv" if i % 2 else "pdf"}}
    return job_row(
        f"job-{i:03d}",
        function=function,
        status=status,
        ended_at=BASE + timedelta(minutes=i),
        run_seconds=0.5 * (i + 1),
        tags=[f"user:{i % 4}"],
        # demo.noop takes no arguments: a bulk retry runs it for real.
        args=[] if function == "demo.noop" else [i],
        kwargs={} if function == "demo.noop" else arguments,
        error={"type": "ValueError", "detail": f"bad row {i}: 50% read"}
        if status == "failed"
        else None,
    )


DATA = [sample(i) for i in range(JOBS)]
# Failed jobs of one function past the bound of a bulk retry, a day after the rest.
OVER_BOUND = [
    job_row(
        f"bound-{i:04d}",
        function="bulk.bound",
        status="failed",
        ended_at=BASE + timedelta(days=1, seconds=i),
        error={"type": "RuntimeError", "detail": "down"},
    )
    for i in range(BOUND)
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    kind = request.param
    postgres = request.getfixturevalue("postgres_server") if kind == "postgresql" else None
    url = new_database(kind, tmp_path_factory.mktemp("archive"), postgres)

    async def fill() -> None:
        engine = await migrated(url)
        await insert(engine, DATA + OVER_BOUND)
        await engine.dispose()

    asyncio.run(fill())
    return url


@pytest.fixture(scope="module")
def web(archive_url: str) -> Iterator[ThreadedServer]:
    # A Redis and worker of each database's own: a bulk retry's jobs (their ids derived from
    # the archived ones') are new on each.
    with running_stack() as stack:
        settings = Settings(
            redis_url=stack.redis_url,
            api_keys=(KEY,),
            token_secret=SECRET,
            archive_url=archive_url,
        )
        with ThreadedServer(create_app(settings)) as server:
            yield server


@pytest.fixture
async def http(web: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=web.base_url, timeout=20, headers=API) as client:
        yield client


async def ids(http: httpx.AsyncClient, **query: str) -> list[str]:
    response = await http.get("/archive/jobs", params={"limit": "200", **query})
    assert response.status_code == 200, response.text
    return [job["job_id"] for job in response.json()["jobs"]]


def expected(**match: Any) -> list[str]:
    """The data set's ids that ``match`` selects, newest first, as the archive pages them."""
    found = [row for row in DATA if all(test(row) for test in match.values())]
    return [row["id"] for row in sorted(found, key=lambda r: (r["ended_at"], r["id"]))][::-1]


async def test_each_filter_selects_exactly_its_jobs(http: httpx.AsyncClient) -> None:
    until = (BASE + timedelta(minutes=JOBS)).isoformat()
    everything = {"since": BASE.isoformat(), "until": until}
    assert await ids(http, **everything) == expected()
    assert await ids(http, function="exports.csv") == expected(
        f=lambda r: r["function"] == "exports.csv"
    )
    assert await ids(http, status="failed", **everything) == expected(
        s=lambda r: r["status"] == "failed"
    )
    assert await ids(http, tag="user:2", **everything) == expected(
        t=lambda r: "user:2" in r["tags"]
    )
    since, until = BASE + timedelta(minutes=10), BASE + timedelta(minutes=20)
    assert await ids(http, since=since.isoformat(), until=until.isoformat()) == expected(
        w=lambda r: since <= r["ended_at"] < until
    )
    # error: a substring of the error, any case, its "%" a character and not a wildcard.
    assert await ids(http, error="ROW 7:") == ["job-007"]
    assert await ids(http, error="50% read", **everything) == expected(
        e=lambda r: r["error"] is not None
    )
    assert await ids(http, error="50%_read") == []


async def test_arg_filters_compare_as_json(http: httpx.AsyncClient) -> None:
    user_3 = expected(u=lambda r: r["kwargs"].get("user") == 3)
    assert await ids(http, **{"arg.user": "3"}) == user_3
    assert await ids(http, **{"arg.user": '"3"'}) == []  # the string "3" is not the number
    assert await ids(http, **{"arg.0": "41"}) == ["job-041"]
    csv_for_user_3 = expected(
        u=lambda r: r["kwargs"].get("user") == 3,
        f=lambda r: r["kwargs"].get("options", {}).get("format") == "csv",
    )
    both = {"arg.user": "3", "arg.options.format": "csv"}
    assert await ids(http, **both) == csv_for_user_3 != []
    assert await ids(http, **{"arg.options.format": "' OR '1'='1"}) == []
    assert await ids(http, **{"arg.missing": "null"}) == []


async def test_pages_skip_and_repeat_nothing_while_rows_arrive(
    http: httpx.AsyncClient, archive_url: str
) -> None:
    tag = "user:1"
    want = expected(t=lambda r: tag in r["tags"])
    first = (await http.get("/archive/jobs", params={"tag": tag, "limit": "4"})).json()
    seen = [job["job_id"] for job in first["jobs"]]
    cursor = first["next_cursor"]
    # Jobs that end now arrive while the reader pages: newer than the cursor, they are
    # on no later page, and nothing already seen moves.
    engine = await migrated(archive_url)
    arrivals = [
        job_row(f"late-{i}", tags=[tag], ended_at=BASE + timedelta(days=2, minutes=i))
        for i in range(5)
    ]
    inserted: list[str] = []
    try:
        for row in arrivals:
            await insert(engine, [row])
            inserted.append(row["id"])
            page = await http.get(
                "/archive/jobs", params={"tag": tag, "limit": "4", "cursor": cursor}
            )
            assert page.status_code == 200, page.text
            seen += [job["job_id"] for job in page.json()["jobs"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        while cursor is not None:
            page = await http.get(
                "/archive/jobs", params={"tag": tag, "limit": "4", "cursor": cursor}
            )
            seen += [job["job_id"] for job in page.json()["jobs"]]
            cursor = page.json()["next_cursor"]
        assert seen == want
        newest = await ids(http, tag=tag, limit="5")
        assert newest[: len(inserted)] == inserted[::-1]
    finally:
        from sqlalchemy import delete

        from jobhub.archive.schema import JOBS as TABLE

        async with engine.begin() as connection:
            await connection.execute(delete(TABLE).where(TABLE.c.id.like("late-%")))
        await engine.dispose()


async def test_stats_count_per_bucket_and_give_run_time_percentiles(
    http: httpx.AsyncClient,
) -> None:
    since, until = BASE, BASE + timedelta(minutes=JOBS)
    params = {"since": since.isoformat(), "until": until.isoformat(), "bucket": "hour"}
    stats = (await http.get("/archive/stats", params=params)).json()
    assert stats["bucket"] == "hour"
    [hour] = stats["buckets"]
    assert hour["start"] == "2026-11-01T00:00:00Z"
    assert hour["counts"] == {"finished": 20, "failed": 20, "canceled": 20}
    for function in FUNCTIONS:
        runs = sorted(r["run_seconds"] for r in DATA if r["function"] == function)
        [row] = [f for f in stats["functions"] if f["function"] == function]
        assert row["count"] == len(runs)
        for name, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert row[name] == pytest.approx(percentile(runs, fraction))
    per_minute = {**params, "bucket": "minute", "function": "demo.noop"}
    minutes = (await http.get("/archive/stats", params=per_minute)).json()
    noop = [r for r in DATA if r["function"] == "demo.noop"]
    assert len(minutes["buckets"]) == len(noop)  # one job a minute
    assert sum(sum(b["counts"].values()) for b in minutes["buckets"]) == len(noop)
    # One job a minute: one status counts 1, and the other two are there, as 0.
    for counted in minutes["buckets"]:
        assert sorted(counted["counts"].values()) == [0, 0, 1], counted
    assert {r["function"] for r in minutes["over_time"]} == {"demo.noop"}


async def test_the_python_client_counts_a_retry_with_the_filters_history_takes(
    web: ThreadedServer,
) -> None:
    want = [
        i
        for i in range(JOBS)
        if STATUSES[i % 3] == "failed" and FUNCTIONS[(i // 3) % 3] == "reports.build" and i % 5 == 1
    ]
    assert want  # the data set has such jobs
    async with AsyncClient(web.base_url, api_key=KEY) as hub:
        page = await hub.history(function="reports.build", status="failed", args={"user": 1})
        counted = await hub.retry_failed(function="reports.build", args={"user": 1})
    assert sorted(job.job_id for job in page.jobs) == [f"job-{i:03d}" for i in want]
    assert counted["count"] == len(want)


async def test_bulk_retry_counts_then_retries_what_it_counted(http: httpx.AsyncClient) -> None:
    bound = (await http.post("/archive/retry", json={"filter": {"function": "bulk.bound"}})).json()
    assert bound == {"count": 1000, "matched": BOUND, "limit": 1000}

    chosen = {"function": "demo.noop", "tag": "user:1"}
    failed = expected(
        f=lambda r: r["function"] == "demo.noop",
        t=lambda r: "user:1" in r["tags"],
        s=lambda r: r["status"] == "failed",
    )
    counted = (await http.post("/archive/retry", json={"filter": chosen})).json()
    assert counted["count"] == len(failed) > 0
    stale = await http.post("/archive/retry", json={"filter": chosen, "count": len(failed) + 1})
    assert stale.status_code == 409
    assert stale.json()["error"]["type"] == "RetryConflict"

    done = await http.post("/archive/retry", json={"filter": chosen, "count": len(failed)})
    assert done.status_code == 202, done.text
    retried = done.json()["retried"]
    assert sorted(r["retry_of"] for r in retried) == sorted(failed)
    assert all(r["created"] for r in retried)
    for job in retried:
        snapshot = await wait_until(
            lambda job=job: _terminal(http, job["job_id"]), limit=30, what="the retry ends"
        )
        assert snapshot["status"] == "finished"
        assert snapshot["retry_of"] == job["retry_of"]
    # Asked again, the same retries are answered, not started twice.
    again_response = await http.post(
        "/archive/retry", json={"filter": chosen, "count": len(failed)}
    )
    assert again_response.status_code == 202, again_response.text
    again = again_response.json()
    assert sorted(r["job_id"] for r in again["retried"]) == sorted(r["job_id"] for r in retried)
    assert not any(r["created"] for r in again["retried"])
    # A function no live worker runs is skipped, with why.
    unknown = {"function": "reports.build", "error": "row 1:"}
    skipped = (await http.post("/archive/retry", json={"filter": unknown, "count": 1})).json()
    assert skipped["retried"] == []
    assert "no live worker" in skipped["skipped"][0]["reason"]


async def test_a_retry_only_the_archive_holds_is_answered_not_started_again(
    http: httpx.AsyncClient, archive_url: str
) -> None:
    # A failed job retried before; the retry ended and Redis forgot it (JOBHUB_RESULT_TTL).
    error = {"type": "RuntimeError", "detail": "retried past its TTL"}
    long_ago = BASE - timedelta(days=30)
    failed = job_row("ttl-failed", function="demo.noop", status="failed", ended_at=long_ago,
                     error=error)  # fmt: skip
    retry = job_row(retry_id(failed["id"]), function="demo.noop", ended_at=long_ago)
    retry["retry_of"] = failed["id"]
    # Another, whose retry's id names an archived job that is not its retry.
    taken = job_row("ttl-taken", function="demo.noop", status="failed", ended_at=long_ago,
                    error=error)  # fmt: skip
    other = job_row(retry_id(taken["id"]), function="demo.noop", ended_at=long_ago)
    added = [failed, retry, taken, other]
    engine = await migrated(archive_url)
    try:
        await insert(engine, added)
        chosen = {"function": "demo.noop", "error": error["detail"]}
        assert (await http.post("/archive/retry", json={"filter": chosen})).json()["count"] == 2
        done = await http.post("/archive/retry", json={"filter": chosen, "count": 2})
        assert done.status_code == 202, done.text
        assert done.json()["retried"] == [
            {"job_id": retry["id"], "retry_of": failed["id"], "created": False}
        ]
        assert [s["job_id"] for s in done.json()["skipped"]] == [taken["id"]]
        # Nothing started under either id: the archive still answers for both.
        for job_id in (retry["id"], other["id"]):
            assert (await http.get(f"/jobs/{job_id}")).json()["archived"] is True
    finally:
        async with engine.begin() as connection:
            for table in (PROGRESS, JOBS_TABLE):
                column = table.c.job_id if table is PROGRESS else table.c.id
                await connection.execute(
                    delete(table).where(column.in_([row["id"] for row in added]))
                )
        await engine.dispose()


async def _terminal(http: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    snapshot: dict[str, Any] = (await http.get(f"/jobs/{job_id}")).json()
    return snapshot if snapshot.get("status") in TERMINAL else None


async def test_an_archived_job_answers_its_reads_with_the_same_auth(
    http: httpx.AsyncClient, web: ThreadedServer
) -> None:
    row = DATA[7]
    job = await http.get(f"/jobs/{row['id']}")
    assert job.status_code == 200, job.text
    assert job.json()["archived"] is True
    assert job.json()["status"] == row["status"]
    assert job.json()["error"] == row["error"]
    history = (await http.get(f"/jobs/{row['id']}/history")).json()
    assert [h["seq"] for h in history] == [1, 2, 3]
    assert [h["status"] for h in history] == ["queued", "running", row["status"]]
    detail = (await http.get(f"/jobs/{row['id']}/detail")).json()
    assert detail["archived"] is True
    assert detail["arguments"] == {"args": row["args"], "kwargs": row["kwargs"]}
    assert detail["actions"] == []
    assert detail["timings"]["run_seconds"] == row["run_seconds"]

    async with httpx.AsyncClient(base_url=web.base_url, timeout=20) as anonymous:
        for path in ("", "/history", "/detail"):
            assert (await anonymous.get(f"/jobs/{row['id']}{path}")).status_code == 401
        # The job's token still opens it: its instance is the archived created_at.
        instance = job.json()["created_at"].replace("-", "").replace(":", "").replace(".", "")
        token = Tokens(SECRET, ttl_seconds=600).issue(row["id"], instance)
        for path in ("", "/history", "/detail"):
            opened = await anonymous.get(f"/jobs/{row['id']}{path}", params={"token": token})
            assert opened.status_code == 200, opened.text
        other = Tokens(SECRET, ttl_seconds=600).issue(DATA[8]["id"], instance)
        refused = await anonymous.get(f"/jobs/{row['id']}", params={"token": other})
        assert refused.status_code == 403
    assert (await http.get("/jobs/never-was")).status_code == 404


async def test_every_archive_endpoint_needs_an_api_key(
    http: httpx.AsyncClient, web: ThreadedServer
) -> None:
    grant = await http.post(
        "/tokens", json={"scope": {"tags": ["user:1"]}, "actions": ["read", "start"]}
    )
    scoped = {"Authorization": f"Bearer {grant.json()['token']}"}
    calls = [
        ("GET", "/archive/jobs", None),
        ("GET", "/archive/stats", None),
        ("POST", "/archive/retry", {"filter": {}}),
    ]
    async with httpx.AsyncClient(base_url=web.base_url, timeout=20) as anonymous:
        for method, path, body in calls:
            assert (await anonymous.request(method, path, json=body)).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (
                await anonymous.request(method, path, json=body, headers=wrong)
            ).status_code == 401
            # The archive spans every tag: a scoped token gets no part of it.
            refused = await anonymous.request(method, path, json=body, headers=scoped)
            assert refused.status_code == 403, refused.text
        # ...but opens an archived job of its own tags, as it opened it live.
        assert (await anonymous.get("/jobs/job-001", headers=scoped)).status_code == 200
        assert (await anonymous.get("/jobs/job-002", headers=scoped)).status_code == 403


HOSTILE = [
    "limit=0",
    "limit=201",
    "limit=abc",
    "limit=%D9%A4",
    "status=queued",
    "status=failed&status=finished",
    "since=yesterday",
    "since=2026-13-01",
    "since=99999999d",
    "since=2026-11-02&until=2026-11-01",
    "function=x%27%20OR%201%3D1--",
    "tag=" + "a" * 65,
    "error=",
    "error=" + "e" * 201,
    "error=%0a",
    "bogus=1",
    "arg.=1",
    "arg.a..b=1",
    "arg." + ".".join("abcdefghi") + "=1",
    "arg.a%27--=1",
    "arg.a=%5B1%5D",
    "arg.a=%7B%7D",
    "arg.a=1e999999",
    "arg.a=99999999999999999999",
    "arg.a=a%00b",
    "arg.a=%22%5Cu0000%22",
    "cursor=garbage!",
    "cursor=" + base64.urlsafe_b64encode(b'["2026-11-01T00:00:00","../x"]').decode(),
    "cursor=" + base64.urlsafe_b64encode(b'["never","job-1"]').decode(),
    "cursor=" + base64.urlsafe_b64encode(b"[1,2,3]").decode(),
]


@pytest.mark.parametrize("query", HOSTILE)
async def test_a_hostile_query_string_is_a_400(http: httpx.AsyncClient, query: str) -> None:
    response = await http.get(f"/archive/jobs?{query}")
    assert response.status_code == 400, (query, response.text)
    assert response.json()["error"]["type"] == "InvalidRequest"


@pytest.mark.parametrize(
    "query",
    ["bucket=week", "bucket=minute&since=30d", "cursor=x", "since=1970-01-01&bucket=minute"],
)
async def test_a_hostile_stats_query_is_a_400(http: httpx.AsyncClient, query: str) -> None:
    response = await http.get(f"/archive/stats?{urllib.parse.quote(query, safe='=&')}")
    assert response.status_code == 400, (query, response.text)


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"filter": {"status": "finished"}}', b'{"filter": {}, "count": 1001}',
     b'{"filter": {"nope": "1"}}', b'{"count": -1}', b'{"filter": {}, "extra": 1}',
     b'{"filter": {"arg.user": "\\u0000"}}'],
)  # fmt: skip
async def test_a_hostile_retry_body_is_a_400(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post(
        "/archive/retry", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, (body, response.text)


def test_the_history_command_pages_through_the_archive(web: ThreadedServer) -> None:
    want = expected(f=lambda r: r["function"] == "exports.csv")
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
    command = [sys.executable, "-m", "jobhub", "--url", web.base_url, "--api-key", KEY]
    listed = subprocess.run(
        [*command, "history", "--function", "exports.csv", "--limit", str(len(want)), "--json"],
        capture_output=True, text=True, timeout=60, env=base,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["job_id"] for line in listed.stdout.splitlines()] == want
    failed = subprocess.run(
        [*command, "history", "--status", "failed", "--arg", "user=1", "--since", "3650d"],
        capture_output=True, text=True, timeout=60, env=base,
    )  # fmt: skip
    assert failed.returncode == 0, failed.stderr
    wanted = expected(s=lambda r: r["status"] == "failed", u=lambda r: r["kwargs"].get("user") == 1)
    assert [line.split()[1] for line in failed.stdout.splitlines()] == wanted != []
    assert "ValueError" in failed.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "jobhub", "--url", web.base_url, "history"],
        capture_output=True, text=True, timeout=60, env=base,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "API key" in refused.stderr
