"""Signed webhooks on a job's end, with retries, to a real receiver; their delivery log;
refused targets; the request pinned to the address that was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobhub import InvalidRequest, Settings, create_app
from jobhub.core import keys
from jobhub.dev.server import free_port
from jobhub.webhooks.deliveries import SIGNATURE_HEADER, check_target, post, sign, verify
from jobhub.webhooks.targets import parse, refusal
from tests.support.helpers import wait_for
from tests.support.servers import WEBHOOK_SECRET, ThreadedServer


class Receiver:
    """Records what it is sent; fails the first ``failures`` calls, or answers slowly."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str]] = []
        self.hosts: list[str] = []
        self.failures = 0
        self.delay = 0.0
        self.answered = 0

    async def hook(self, request: Request) -> Response:
        self.calls.append((await request.body(), request.headers.get(SIGNATURE_HEADER, "")))
        self.hosts.append(request.headers.get("host", ""))
        await asyncio.sleep(self.delay)
        self.answered += 1
        return Response(status_code=500 if len(self.calls) <= self.failures else 200)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()
    with ThreadedServer(Starlette(routes=[Route("/hook", state.hook, methods=["POST"])])) as web:
        yield state, web.base_url + "/hook"


async def start(client: httpx.AsyncClient, callback_url: str, **kwargs: Any) -> str:
    body = {
        "function": "demo.count",
        "kwargs": {"steps": 2, "delay": 0.05},
        "callback_url": callback_url,
    }
    response = await client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def test_final_snapshot_is_posted_signed_and_retried_until_accepted(
    client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.failures = 2
    job_id = await start(client, url)
    final = await wait_for(client, job_id)
    async with asyncio.timeout(15):
        while len(state.calls) < 3:
            await asyncio.sleep(0.05)
    for body, signature in state.calls:
        assert json.loads(body) == final
        assert verify(body, signature, WEBHOOK_SECRET)
        assert not verify(body, signature, "another-secret")
        assert not verify(body.replace(b"finished", b"failed"), signature, WEBHOOK_SECRET)
        assert not verify(body, signature, WEBHOOK_SECRET, now=time.time() + 3600)  # a replay
    attempts = (await client.get(f"/jobs/{job_id}/deliveries")).json()
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert [a["error"] for a in attempts] == [
        "the receiver answered 500",
        "the receiver answered 500",
        None,
    ]
    # A window for what must not happen: a delivery sent again (retries are 0.1 s apart).
    await asyncio.sleep(0.5)
    assert len(state.calls) == 3  # accepted: not sent again


async def test_a_slow_receiver_does_not_delay_the_job(
    client: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.delay = 3.0
    job_id = await start(client, url)
    final = await wait_for(client, job_id, limit=2.5)
    assert final["status"] == "finished"
    assert state.answered == 0  # the delivery is still under way; the job was not held


def test_signatures_round_trip_and_expire() -> None:
    body = b'{"job_id":"j"}'
    header = sign(body, "k", timestamp=1_000_000)
    assert header.startswith("t=1000000,v1=")
    assert verify(body, header, "k", now=1_000_100)
    assert not verify(body, header, "k", now=1_000_400)  # outside the 300 s tolerance
    assert not verify(body, "garbage", "k")
    assert not verify(body, "t=abc,v1=00", "k")
    assert not verify(body, "t=\u00b2,v1=00", "k")  # "²": str.isdigit() says yes, int() no


async def test_history_holds_snapshots_only_and_deliveries_expire_with_the_job(
    client: httpx.AsyncClient, receiver: tuple[Receiver, str], redis_client: Redis
) -> None:
    state, url = receiver
    state.failures = 1
    job_id = await start(client, url)
    await wait_for(client, job_id)
    async with asyncio.timeout(15):
        while len((await client.get(f"/jobs/{job_id}/deliveries")).json()) < 2:
            await asyncio.sleep(0.05)
    history = (await client.get(f"/jobs/{job_id}/history")).json()
    assert history, "no history"
    for entry in history:  # every entry a snapshot, as the OpenAPI document promises
        assert set(entry) >= {"job_id", "status", "seq", "updated_at"}, entry
        assert "webhook" not in entry
    job_ttl = await redis_client.pttl(keys.job_snapshot(job_id))
    log_ttl = await redis_client.pttl(keys.job_deliveries(job_id))
    # Copied inside one script (PTTL, then PEXPIRE), yet Redis can round the two a
    # millisecond apart: the log must not outlive the job by more than that.
    assert job_ttl > 0 and 0 < log_ttl <= job_ttl + 2
    assert job_ttl - log_ttl < 60_000  # copied from the job's hash when last written


async def test_deliveries_of_an_unknown_job_are_404_and_of_a_job_without_webhook_empty(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/jobs/no-such-job/deliveries")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "JobNotFound"
    response = await client.post("/jobs", json={"function": "demo.noop"})
    assert response.status_code == 202
    deliveries = await client.get(f"/jobs/{response.json()['job_id']}/deliveries")
    assert deliveries.status_code == 200
    assert deliveries.json() == []


MALFORMED = [
    ("http://example.com:99999/hook", "malformed port"),
    ("http://example.com:0/hook", "malformed port"),
    ("http://example.com:abc/hook", "malformed port"),
    ("http://example.com:+80/hook", "malformed port"),
    ("http://example.com:\u0663/hook", "ASCII"),  # an Arabic-Indic digit
    ("http://:80/hook", "malformed host"),
    ("http:///hook", "http(s) URL"),
    ("http://[::1/hook", "malformed"),
    ("http://::1]/hook", "malformed"),
    ("http://[::1]x/hook", "malformed port"),
    ("http://[127.0.0.1]/hook", "malformed"),
    ("http://[fe80::1%25eth0]/hook", "malformed IPv6"),
    ("http://user:pass@example.com/hook", "credentials"),
    ("http://example.com@127.0.0.1/hook", "credentials"),
    ("http://127.0.0.1\\@example.com/hook", "backslashes"),
    ("http://exa mple.com/hook", "spaces"),
    ("http://example.com/\thook", "control characters"),
    ("http://b\u00fccher.example/hook", "ASCII"),
    ("http://%31%32%37.0.0.1/hook", "malformed host"),
    ("http://-bad.example.com/hook", "malformed host"),
    ("http://a..b/hook", "malformed host"),
    ("ftp://example.com/x", "http(s) URL"),
    ("not a url", "spaces"),
]

NON_PUBLIC = [
    "http://127.0.0.1:9/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest",
    "http://0x7f.1/hook",  # inet_aton's forms resolve to 127.0.0.1
    "http://2130706433/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/hook",
    "http://[::7f00:1]/hook",  # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://[64:ff9b::7f00:1]/hook",
    "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
    "http://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, client 127.0.0.1
    "http://[64:ff9b:1::1]/hook",  # local-use NAT64
    "http://[fec0::1]/hook",  # site-local
    "http://[fd00::1]/hook",  # unique local
    "http://[ff02::1]/hook",  # multicast
    "http://224.0.0.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://240.0.0.1/hook",  # reserved
    "http://0.0.0.0/hook",
]


async def test_callback_targets_are_checked(redis_url: str) -> None:
    refusing = Settings(redis_url=redis_url, webhook_secret="s")
    disabled = Settings(redis_url=redis_url)
    body: dict[str, Any] = {"function": "demo.noop"}
    cases = [*MALFORMED, *((url, "non-public address") for url in NON_PUBLIC)]
    with ThreadedServer(create_app(refusing)) as web, ThreadedServer(create_app(disabled)) as off:
        async with httpx.AsyncClient(base_url=web.base_url) as client:
            for url, detail in cases:
                response = await client.post("/jobs", json={**body, "callback_url": url})
                assert response.status_code == 400, (url, response.text)
                assert detail in response.json()["error"]["detail"], url
        async with httpx.AsyncClient(base_url=off.base_url) as client:
            response = await client.post("/jobs", json={**body, "callback_url": "http://x/"})
            assert response.status_code == 400
            assert "not enabled" in response.json()["error"]["detail"]


def test_malformed_urls_are_refused_even_where_private_targets_are_allowed() -> None:
    for url, detail in MALFORMED:
        with pytest.raises(InvalidRequest, match=re.escape(detail)):
            asyncio.run(check_target(url, allow_private=True))


def test_ports_default_by_scheme_and_the_host_header_keeps_the_name() -> None:
    assert parse("http://example.com/a?b=1#frag").port == 80
    assert parse("https://example.com").port == 443
    assert parse("https://example.com:/x").port == 443  # an empty port is the default
    assert parse("https://Example.COM:8443/x").host_header == "example.com:8443"
    assert parse("http://[2606:4700::1111]:8080/").host_header == "[2606:4700::1111]:8080"
    assert parse("https://example.com:443/x").host_header == "example.com"
    assert parse("http://example.com/a?b=1#frag").path == "/a?b=1"


def test_addresses_that_only_wrap_a_public_ipv4_address_are_allowed() -> None:
    for address in (
        "93.184.216.34",
        "2606:4700::1111",
        "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34: how IPv6-only networks reach it
        "2002:5db8:d822::1",  # 6to4
        "::ffff:93.184.216.34",
    ):
        assert refusal(ipaddress.ip_address(address)) is None, address
    assert refusal(ipaddress.ip_address("::5db8:d822")) is not None  # IPv4-compatible


class RebindingLoop(asyncio.SelectorEventLoop):
    """A loop whose resolver gives ``NAME`` one address first and another after, as a
    rebinding DNS server would (one answer at the check, another at the request)."""

    NAME = "rebind.test"

    def __init__(self, answers: list[str]) -> None:
        super().__init__()
        self.answers = answers
        self.asked = 0

    async def getaddrinfo(self, host: Any, port: Any, **kwargs: Any) -> Any:
        if host in (self.NAME, self.NAME.encode()):  # anyio (under httpx) asks with bytes
            address = self.answers[min(self.asked, len(self.answers) - 1)]
            self.asked += 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return await super().getaddrinfo(host, port, **kwargs)


@contextmanager
def serving(app: Starlette, host: str, port: int, **options: Any) -> Iterator[None]:
    """uvicorn serving ``app`` on ``host:port`` from a thread, with ``uvicorn.Config`` options."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_request_goes_to_the_address_that_was_checked() -> None:
    first, second = Receiver(), Receiver()
    app = Starlette(routes=[Route("/hook", first.hook, methods=["POST"])])
    other = Starlette(routes=[Route("/hook", second.hook, methods=["POST"])])
    port = free_port()
    # Two servers on one port, at two loopback addresses (Linux routes all of 127/8 to lo).
    with serving(app, "127.0.0.1", port), serving(other, "127.0.0.2", port):
        loop = RebindingLoop(["127.0.0.1", "127.0.0.2"])
        url = f"http://{RebindingLoop.NAME}:{port}/hook"

        async def deliver() -> int:
            async with httpx.AsyncClient() as http:
                return await post(http, url, b"{}", secret="k", allow_private=True)

        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            assert runner.run(deliver()) == 200
    assert loop.asked == 1  # resolved once: httpx connected to the address, not the name
    assert len(first.calls) == 1 and second.calls == []
    assert first.hosts == [f"{RebindingLoop.NAME}:{port}"]  # the original Host


def test_over_tls_the_certificate_is_checked_for_the_name_not_the_address(
    tmp_path: Path,
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={RebindingLoop.NAME}",
         "-addext", f"subjectAltName=DNS:{RebindingLoop.NAME}"],
        check=True, capture_output=True,
    )  # fmt: skip
    state = Receiver()
    app = Starlette(routes=[Route("/hook", state.hook, methods=["POST"])])
    port = free_port()
    trusting = ssl.create_default_context(cafile=str(cert))
    with serving(app, "127.0.0.1", port, ssl_certfile=str(cert), ssl_keyfile=str(key)):
        loop = RebindingLoop(["127.0.0.1"])

        async def deliver(url: str) -> int:
            async with httpx.AsyncClient(verify=trusting) as http:
                return await post(http, url, b"{}", secret="k", allow_private=True)

        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            # Connected to 127.0.0.1, verified as rebind.test (the SNI name): accepted.
            assert runner.run(deliver(f"https://{RebindingLoop.NAME}:{port}/hook")) == 200
            # The same server reached by its address: the certificate does not name it.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                runner.run(deliver(f"https://127.0.0.1:{port}/hook"))
    assert state.hosts == [f"{RebindingLoop.NAME}:{port}"]
