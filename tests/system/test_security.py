"""What a caller cannot do to jobhub: make a worker read an endless webhook answer or hold a
delivery open, change a job with a cookie another site's form carries, open a job created
again under an old job's id, or read the metrics without a key. Against a stack of its own
(a private redis-server, the `arq` CLI worker and uvicorn as subprocesses, API keys on, a
one-second webhook deadline) and webhook receivers on raw loopback sockets."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from jobhub.core import keys
from jobhub.core.exceptions import Forbidden
from jobhub.dev.server import Stack
from jobhub.server.auth import Tokens, instance_of
from tests.support.servers import running_stack

KEY = "security-key"
BEARER = {"Authorization": f"Bearer {KEY}"}
DEADLINE = 1  # JOBHUB_WEBHOOK_TIMEOUT of this module's worker
ANSWER = 200 * 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "JOBHUB_API_KEYS": KEY,
        "JOBHUB_TOKEN_SECRET": "security-secret",
        "JOBHUB_WEBHOOK_SECRET": "security-webhook-secret",
        "JOBHUB_WEBHOOK_ALLOW_PRIVATE": "true",
        "JOBHUB_WEBHOOK_BACKOFF": "0.1",
        "JOBHUB_WEBHOOK_MAX_ATTEMPTS": "2",
        "JOBHUB_WEBHOOK_TIMEOUT": str(DEADLINE),
    }
    # A Redis of its own: the session stack's worker would otherwise claim these
    # deliveries too, with its own deadline.
    with running_stack(env=env) as running:
        yield running


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
        yield http


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[Redis]:
    connection = Redis.from_url(stack.redis_url)
    yield connection
    await connection.aclose()


class RawReceiver:
    """A webhook receiver on a raw loopback socket: it reads each request whole, then hands
    the connection to ``answer``, which writes until the client closes it. The answers
    these tests need (an endless body, a status line a byte at a time) are what a
    well-behaved server never sends."""

    def __init__(self, answer: Callable[[socket.socket], int]) -> None:
        self._answer = answer
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        self.arrivals: list[float] = []
        """When each request had arrived whole (monotonic)."""
        self.hangups: list[float] = []
        """When the client was found to have closed each connection."""
        self.sent: list[int] = []
        """Bytes of answer written on each connection before the client closed it."""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            header, _, body = head.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in header.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.arrivals.append(time.monotonic())
            self.sent.append(self._answer(conn))
            self.hangups.append(time.monotonic())

    def close(self) -> None:
        self._server.close()


def endless_body(conn: socket.socket) -> int:
    """200 OK with a 200 MB body, written a chunk at a time (never held whole here)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % ANSWER)
    chunk, sent = bytes(CHUNK), 0
    try:
        while sent < ANSWER:
            conn.sendall(chunk)
            sent += CHUNK
    except OSError:
        pass  # the client closed the connection
    return sent


def trickle(conn: socket.socket) -> int:
    """An answer a byte every 0.2 s: the status line alone would take over 3 s."""
    answer, sent = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: y\r\n" * 1000, 0
    try:
        for byte in answer:
            conn.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.2)
    except OSError:
        pass
    return sent


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[RawReceiver]:
    raw = RawReceiver(request.param)
    yield raw
    raw.close()


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM): what it ever held, not just now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for process {pid}")


def worker_pid(stack: Stack) -> int:
    (worker,) = [
        p for p in stack.processes if b"arq" in Path(f"/proc/{p.pid}/cmdline").read_bytes()
    ]
    return worker.pid


async def start(client: httpx.AsyncClient, function: str, **fields: Any) -> httpx.Response:
    response = await client.post("/jobs", json={"function": function, **fields}, headers=BEARER)
    assert response.status_code in (200, 202), response.text
    client.cookies.clear()  # each test sends the cookies it means to
    return response


async def deliveries_settled(redis: Redis, job_id: str, limit: float = 15) -> None:
    """Wait until the job's webhook was tried and has left the delivery queue: accepted or
    given up (it joins the queue in the step that ends the job)."""
    member = msgspec.json.encode(job_id)
    async with asyncio.timeout(limit):
        while not (
            await redis.llen(keys.job_deliveries(job_id))  # type: ignore[misc]
            and await redis.zscore(keys.WEBHOOKS, member) is None
        ):
            await asyncio.sleep(0.05)


async def until(predicate: Callable[[], bool], limit: float = 10) -> None:
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("receiver", [endless_body], indirect=True)
async def test_a_webhook_answer_is_not_read_so_an_endless_one_costs_the_worker_nothing(
    stack: Stack, client: httpx.AsyncClient, redis: Redis, receiver: RawReceiver
) -> None:
    pid = worker_pid(stack)
    peak_before = peak_rss_kib(pid)
    job_id = (await start(client, "demo.noop", callback_url=receiver.url)).json()["job_id"]
    await deliveries_settled(redis, job_id)
    attempts = (await client.get(f"/jobs/{job_id}/deliveries", headers=BEARER)).json()
    assert [(a["attempt"], a["status"], a["error"]) for a in attempts] == [(1, 200, None)]
    await until(lambda: len(receiver.hangups) == 1)  # the worker closed the connection
    # Only what the socket buffers took before the worker hung up (a few MB on loopback);
    # reading the answer whole took all 200 MB and grew the worker by over 300 MB.
    assert receiver.sent[0] < 32 * 1024 * 1024, receiver.sent
    grown = peak_rss_kib(pid) - peak_before
    assert grown < 32 * 1024, f"the worker's peak RSS grew by {grown} KiB"


@pytest.mark.parametrize("receiver", [trickle], indirect=True)
async def test_a_trickling_receiver_gets_one_attempt_per_deadline_each_recorded(
    client: httpx.AsyncClient, redis: Redis, receiver: RawReceiver
) -> None:
    job_id = (await start(client, "demo.noop", callback_url=receiver.url)).json()["job_id"]
    await deliveries_settled(redis, job_id)  # both attempts made, and given up
    attempts = (await client.get(f"/jobs/{job_id}/deliveries", headers=BEARER)).json()
    error = f"no answer within {DEADLINE} s"
    assert [(a["attempt"], a["status"], a["error"]) for a in attempts] == [
        (1, None, error),
        (2, None, error),
    ]
    await until(lambda: len(receiver.hangups) == 2)
    assert len(receiver.arrivals) == 2  # not sent again while an attempt was still open
    for arrived, hung_up in zip(receiver.arrivals, receiver.hangups, strict=True):
        # Each attempt held the connection for its deadline (and the trickle noticed the
        # close at its next byte, 0.2 s on), not for the 3.4 s its status line alone needed.
        assert DEADLINE - 0.1 < hung_up - arrived < DEADLINE + 1.5
    assert receiver.arrivals[1] - receiver.arrivals[0] > DEADLINE - 0.1


async def test_the_job_cookie_alone_changes_nothing_even_from_a_form(
    client: httpx.AsyncClient,
) -> None:
    started = await start(client, "demo.count", kwargs={"steps": 200, "delay": 0.05})
    job_id, token = started.json()["job_id"], started.headers["jobhub-token"]
    assert f"jobhub_token={token}" in started.headers["set-cookie"]
    signed_in = await client.post("/session", json={"api_key": KEY})
    session = signed_in.cookies["jobhub_session"]
    client.cookies.clear()
    # What a page of another site makes the browser send: a form, its own Origin, and the
    # cookies the browser holds for this site (SameSite=Lax lets a same-site one through).
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.test"}
    for cookies in (f"jobhub_token={token}", f"jobhub_token={token}; jobhub_session={session}"):
        headers = {**form, "Cookie": cookies}
        for method, path in (
            ("POST", f"/jobs/{job_id}/cancel"),
            ("POST", f"/jobs/{job_id}/pause"),
            ("DELETE", f"/jobs/{job_id}"),
        ):
            refused = await client.request(method, path, content=b"x=1", headers=headers)
            assert refused.status_code == 403, (method, path, cookies, refused.text)
            assert refused.json()["error"]["type"] == "Forbidden"
    snapshot = (await client.get(f"/jobs/{job_id}", headers=BEARER)).json()
    assert snapshot["status"] in ("queued", "started", "running"), snapshot
    # The cookie still opens the job for reading (the page that started it draws it).
    read = await client.get(f"/jobs/{job_id}", headers={"Cookie": f"jobhub_token={token}"})
    assert read.status_code == 200
    # The token itself, which no other site's page can know, changes it.
    bearer = {"Authorization": f"Bearer {token}"}
    canceled = await client.post(f"/jobs/{job_id}/cancel", headers=bearer)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"


async def test_a_job_created_again_under_its_id_does_not_open_to_the_old_token(
    client: httpx.AsyncClient,
) -> None:
    job_id = "again-" + secrets.token_hex(4)
    first = await start(client, "demo.noop", job_id=job_id)
    old = first.headers["jobhub-token"]
    async with asyncio.timeout(10):
        while (await client.get(f"/jobs/{job_id}", headers=BEARER)).json()["status"] != "finished":
            await asyncio.sleep(0.05)
    old_bearer = {"Authorization": f"Bearer {old}"}
    assert (await client.delete(f"/jobs/{job_id}", headers=old_bearer)).status_code == 204
    assert (await client.get(f"/jobs/{job_id}", headers=old_bearer)).status_code == 404
    second = await start(client, "demo.count", job_id=job_id, kwargs={"steps": 3, "delay": 0.1})
    assert second.status_code == 202
    new = second.headers["jobhub-token"]
    assert new != old
    for refused in (
        await client.get(f"/jobs/{job_id}", headers=old_bearer),
        await client.get(f"/jobs/{job_id}", headers={"Cookie": f"jobhub_token={old}"}),
        await client.get(f"/jobs/{job_id}/history", params={"token": old}),
        await client.get(f"/jobs/{job_id}/events", params={"token": old}),
        await client.get("/events", params={"jobs": job_id, "tokens": old}),
        await client.post(f"/jobs/{job_id}/cancel", headers=old_bearer),
    ):
        assert refused.status_code == 403, refused.text
        assert "earlier job" in refused.json()["error"]["detail"]
    opened = await client.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {new}"})
    assert opened.status_code == 200 and opened.json()["function"] == "demo.count"


async def test_metrics_need_an_api_key_when_keys_are_set(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 401
    token = (await start(client, "demo.noop")).headers["jobhub-token"]
    job_token = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/metrics", headers=job_token)).status_code == 401
    allowed = await client.get("/metrics", headers=BEARER)
    assert allowed.status_code == 200
    assert "jobhub_jobs_enqueued_total" in allowed.text


def test_a_token_names_one_instance_of_one_job() -> None:
    tokens = Tokens("s", ttl_seconds=60)
    snapshot = b'{"job_id":"j","created_at":"2026-11-22T05:08:58.123456Z","seq":1}'
    token = tokens.issue("j", instance_of(snapshot))
    assert token.startswith("j.20261122T050858123456Z.")
    assert tokens.verify(token, "j") == "20261122T050858123456Z"
    job, _, rest = token.partition(".")
    forged = f"{job}.20261122T050858123457Z.{rest.partition('.')[2]}"  # another instance
    with pytest.raises(Forbidden, match="invalid job token"):
        tokens.verify(forged, "j")
    session = tokens.session()
    assert tokens.valid_session(session) and not tokens.valid_session(token)
    with pytest.raises(Forbidden, match="malformed"):
        tokens.verify(session, "~session")
