"""POST /jobs and GET /jobs/{id} against a real uvicorn, Redis and ARQ worker."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.helpers import follow, start, wait_for

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

JSON = {"content-type": "application/json"}


async def test_enqueue_answers_202_with_location_and_queued_snapshot(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/jobs", json={"function": "demo.count", "kwargs": {"steps": 5, "delay": 0.2}}
    )
    assert response.status_code == 202
    snap = response.json()
    assert response.headers["location"] == f"/jobs/{snap['job_id']}"
    assert list(snap) == [
        "job_id", "function", "status", "percent", "message", "result", "error",
        "attempt", "start_at", "retry_of", "tags", "seq", "created_at", "updated_at",
        "batch_id", "weight",
    ]  # fmt: skip
    assert snap["status"] == "queued"
    assert snap["seq"] == 1
    assert snap["function"] == "demo.count"
    assert ISO_Z.match(snap["created_at"]) and ISO_Z.match(snap["updated_at"])


async def test_immediate_get_after_enqueue_never_404s(client: httpx.AsyncClient) -> None:
    for _ in range(20):
        snap = await start(client, "demo.count", steps=1, delay=0)
        got = await client.get(f"/jobs/{snap['job_id']}")
        assert got.status_code == 200
        assert got.json()["status"] in {"queued", "started", "running", "finished"}


async def test_server_ids_are_unguessable_and_distinct(client: httpx.AsyncClient) -> None:
    ids = {(await start(client, "demo.noop"))["job_id"] for _ in range(10)}
    assert len(ids) == 10
    for job_id in ids:
        # token_urlsafe(16): 22 characters of a 64-letter alphabet, 128 random bits
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", job_id)


async def test_finished_job_has_result_and_full_percent(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=3, delay=0.01)
    final = await wait_for(client, snap["job_id"])
    assert final["status"] == "finished"
    assert final["percent"] == 100
    assert final["result"] == {"steps": 3}
    assert final["error"] is None
    assert final["attempt"] == 1
    assert final["created_at"] == snap["created_at"]
    assert final["updated_at"] > final["created_at"]


async def test_failing_job_is_failed_with_error_type_and_detail(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.fail", after=2, delay=0.01)
    final = await wait_for(client, snap["job_id"])
    assert final["status"] == "failed"
    assert final["error"] == {"type": "ValueError", "detail": "demo failure after 2 steps"}
    assert final["percent"] == 20  # where it got to before failing
    assert final["result"] is None


async def test_get_carries_etag_and_if_none_match_answers_304(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=1, delay=0)
    final = await wait_for(client, snap["job_id"])
    got = await client.get(f"/jobs/{snap['job_id']}")
    assert got.headers["etag"] == f'"{final["seq"]}"'
    again = await client.get(
        f"/jobs/{snap['job_id']}", headers={"If-None-Match": got.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    stale = await client.get(f"/jobs/{snap['job_id']}", headers={"If-None-Match": '"1"'})
    assert stale.status_code == 200
    assert stale.json() == final


async def test_unknown_job_is_404_json(client: httpx.AsyncClient) -> None:
    for path in ("/jobs/does-not-exist", "/jobs/does-not-exist/events"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "JobNotFound"


async def test_unknown_function_is_4xx_naming_the_known_ones(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs", json={"function": "demo.nope"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "UnknownFunction"
    assert "demo.count" in error["detail"] and "demo.fail" in error["detail"]
    assert {"demo.count", "demo.fail", "demo.noop"} <= set(error["known"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"\xff\xfe\x00bad utf-8", 400),
        (b"", 400),
        (b"[]", 400),
        (b'"demo.count"', 400),
        (b'{"function": 5}', 400),
        (b'{"function": ""}', 400),
        (b'{"kwargs": {}}', 400),
        (b'{"function": "demo.count", "args": {"a": 1}}', 400),
        (b'{"function": "demo.count", "kwargs": []}', 400),
        (b'{"function": "demo.count", "kwargs": {"_job_id": "x"}}', 400),
        (b'{"function": "demo.count", "kwargs": {"_defer_by": 60}}', 400),
        (b'{"function": "demo.count", "job_id": "has space"}', 400),
        (b'{"function": "demo.count", "job_id": ""}', 400),
        (b'{"function": "demo.count", "job_id": "' + b"x" * 65 + b'"}', 400),
        (b'{"function": "demo.count", "surprise": true}', 400),
    ],
)
async def test_bad_bodies_are_4xx_json_errors(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    response = await client.post(
        "/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "InvalidRequest"
    assert error["detail"]


async def test_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"function": "demo.count", "args": ["' + b"x" * (1024 * 1024) + b'"]}'
    response = await client.post("/jobs", content=big, headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "PayloadTooLarge"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536  # no Content-Length: the cap holds while streaming too

    streamed = await client.post("/jobs", content=chunks(), headers=JSON)
    assert streamed.status_code == 413


async def test_bad_job_id_in_path_is_400(client: httpx.AsyncClient) -> None:
    for path in ("/jobs/a.b", "/jobs/" + "x" * 65, "/jobs/%00", "/jobs/a.b/events"):
        response = await client.get(path)
        assert response.status_code == 400, path
        assert response.json()["error"]["type"] == "InvalidRequest"


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFound"
    wrong = await client.delete("/jobs")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "MethodNotAllowed"


async def test_client_job_id_is_an_idempotency_key(client: httpx.AsyncClient) -> None:
    body = {
        "function": "demo.count",
        "kwargs": {"steps": 3, "delay": 0.1},
        "job_id": "idem-" + str(id(client)),
    }
    first = await client.post("/jobs", json=body)
    second = await client.post("/jobs", json=body)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.headers["location"] == first.headers["location"]
    assert second.json()["job_id"] == first.json()["job_id"] == body["job_id"]
    events = await follow(client, body["job_id"], last_event_id=0)
    statuses = [snap["status"] for _, snap in events]
    # A second run would have written a second "started" and more progress.
    assert statuses.count("started") <= 1
    assert events[-1][1]["status"] == "finished"
    assert events[-1][1]["seq"] == 1 + 1 + 3 + 1  # queued, started, 3 reports, finished


async def test_reused_job_id_for_another_function_is_refused(client: httpx.AsyncClient) -> None:
    job_id = "reuse-" + str(id(client))
    assert (
        await client.post("/jobs", json={"function": "demo.noop", "job_id": job_id})
    ).status_code == 202
    other = await client.post("/jobs", json={"function": "demo.count", "job_id": job_id})
    assert other.status_code == 400
    assert "another function" in other.json()["error"]["detail"]


async def test_wrong_arguments_fail_the_job_not_the_request(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", bogus=1)
    final = await wait_for(client, snap["job_id"])
    assert final["status"] == "failed"
    assert final["error"]["type"] == "TypeError"
    assert "bogus" in final["error"]["detail"]


async def test_positional_args_reach_the_function(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs", json={"function": "demo.count", "args": [2, 0.01]})
    final = await wait_for(client, response.json()["job_id"])
    assert final["result"] == {"steps": 2}


async def test_history_lists_every_snapshot_in_seq_order(client: httpx.AsyncClient) -> None:
    snap = await start(client, "demo.count", steps=3, delay=0.01)
    final = await wait_for(client, snap["job_id"])
    response = await client.get(f"/jobs/{snap['job_id']}/history")
    assert response.status_code == 200
    history = response.json()
    assert [s["seq"] for s in history] == list(range(1, final["seq"] + 1))
    assert [s["status"] for s in history] == [
        "queued",
        "started",
        "running",
        "running",
        "running",
        "finished",
    ]
    assert history[-1] == final
    missing = await client.get("/jobs/nope-nope/history")
    assert missing.status_code == 404


async def test_listing_is_newest_first_filtered_and_cursor_paged(client: httpx.AsyncClient) -> None:
    started = [(await start(client, "demo.count", steps=1, delay=0))["job_id"] for _ in range(5)]
    failed = (await start(client, "demo.fail", after=0, delay=0))["job_id"]
    for job_id in [*started, failed]:
        await wait_for(client, job_id)
    first = (await client.get("/jobs", params={"limit": 3})).json()
    assert first["jobs"][0]["job_id"] == failed  # newest first
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "function": "demo.count"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/jobs", params=params)).json()
        seen += [s["job_id"] for s in page["jobs"]]
        assert all(s["function"] == "demo.count" for s in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None or set(started) <= set(seen):
            break
    assert seen[: len(started)] == started[::-1]  # our five, newest first, no repeats
    assert len(seen) == len(set(seen))
    failures = (await client.get("/jobs", params={"status": "failed", "limit": 50})).json()["jobs"]
    assert failed in [s["job_id"] for s in failures]
    assert all(s["status"] == "failed" for s in failures)


async def test_listing_rejects_bad_parameters(client: httpx.AsyncClient) -> None:
    for params in (
        {"status": "sleeping"},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "x"},
        {"cursor": "-1"},
    ):
        response = await client.get("/jobs", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["type"] == "InvalidRequest"


@pytest.mark.parametrize("depth", [66, 1_000, 100_000])
async def test_deep_nesting_is_a_clear_400(client: httpx.AsyncClient, depth: int) -> None:
    body = b'{"function": "demo.count", "args": [' + b"[" * depth + b"]" * depth + b"]}"
    response = await client.post("/jobs", content=body, headers=JSON)
    assert response.status_code == 400
    assert "nest" in response.json()["error"]["detail"]


async def test_nesting_within_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    body = b'{"function": "demo.noop", "kwargs": {}, "args": []}'
    assert (await client.post("/jobs", content=body, headers=JSON)).status_code == 202
    nested = b'{"function": "demo.count", "kwargs": {"extra": ' + b"[" * 60 + b"]" * 60 + b"}}"
    response = await client.post("/jobs", content=nested, headers=JSON)
    assert response.status_code == 202  # accepted; the job itself fails on the odd kwarg


async def test_enormous_and_negative_numbers_are_handled(client: httpx.AsyncClient) -> None:
    beyond = b'{"function": "demo.count", "kwargs": {"steps": ' + b"9" * 5000 + b"}}"
    response = await client.post("/jobs", content=beyond, headers=JSON)
    assert response.status_code == 400
    assert "out of range" in response.json()["error"]["detail"]
    # A big but decodable number is the job's to judge: demo.count refuses it at once.
    big = b'{"function": "demo.count", "kwargs": {"steps": ' + b"9" * 400 + b"}}"
    accepted = await client.post("/jobs", content=big, headers=JSON)
    assert accepted.status_code == 202
    failed = await wait_for(client, accepted.json()["job_id"])
    assert failed["status"] == "failed" and failed["error"]["type"] == "ValueError"
    negative = await client.post("/jobs", json={"function": "demo.count", "kwargs": {"steps": -5}})
    assert negative.status_code == 202
    final = await wait_for(client, negative.json()["job_id"])
    assert final["status"] == "finished" and final["result"] == {"steps": -5}
