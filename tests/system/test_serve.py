"""`jobhub serve`, the web app as the Procfile and `jobhub dev` run it, as a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from jobhub.dev.serve import GRACEFUL_SHUTDOWN_SECONDS
from jobhub.dev.server import free_port
from tests.support.waiting import wait_until_sync

Serve = Callable[..., tuple[subprocess.Popen[bytes], str]]


@pytest.fixture
def serve(redis_url: str) -> Iterator[Serve]:
    """Start ``jobhub serve`` with the given options; SIGTERM it when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobhub", "serve", "--port", str(port), *options],
            env={**env, "REDIS_URL": redis_url}, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until_sync(lambda: proc.poll() is not None or healthy(base), 30, "jobhub serve")
        assert proc.poll() is None, f"jobhub serve exited with {proc.returncode}"
        return proc, base

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def refuses_a_huge_head(base: str) -> bytes:
    """What the server answers to a request head of 128 KiB, twice its limit.

    The head is never finished: a head that arrives whole in one read is parsed before its
    size is looked at, and the limit holds to within one read (protocol.py)."""
    port = int(base.rsplit(":", 1)[1])
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Refused while still sending: the answer is read below.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 128 * 1024)
        try:
            while part := sock.recv(65536):
                answer += part
        except ConnectionResetError:
            pass  # closed with our bytes unread: the kernel may reset after the answer
    return answer


def test_serve_answers_and_refuses_a_huge_request_head_with_431(serve: Serve) -> None:
    proc, base = serve()
    assert httpx.get(base + "/healthz").json()["redis"] == "ok"
    assert refuses_a_huge_head(base).startswith(b"HTTP/1.1 431 ")
    assert healthy(base)  # one connection refused, not the server
    proc.send_signal(signal.SIGTERM)
    # Stopped in time; uvicorn ends by raising the signal it caught again, as a process
    # killed by it (-15), so that a supervisor sees why it stopped.
    assert proc.wait(10) in (0, -signal.SIGTERM)


def spawned(pid: int) -> list[int]:
    """The processes uvicorn started for ``--workers`` (multiprocessing's spawn)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if parent == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def test_web_processes_runs_that_many_behind_one_port(serve: Serve) -> None:
    proc, base = serve("--web-processes", "2")
    wait_until_sync(lambda: len(spawned(proc.pid)) == 2, 20, "two web processes")
    for _ in range(4):  # whichever process takes the connection
        assert healthy(base)
        assert refuses_a_huge_head(base).startswith(b"HTTP/1.1 431 ")


def test_root_path_takes_requests_a_proxy_has_stripped_of_the_prefix(serve: Serve) -> None:
    # The proxy serves https://example.com/jobhub/... and forwards /... (ASGI root_path).
    _, base = serve("--root-path", "/jobhub")
    assert httpx.get(base + "/healthz").status_code == 200
    assert httpx.get(base + "/openapi.json").status_code == 200


def test_host_and_port_come_from_the_environment(redis_url: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobhub", "serve"],
        env={**env, "REDIS_URL": redis_url, "HOST": "127.0.0.1", "PORT": str(port)},
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_sync(lambda: proc.poll() is not None or healthy(base), 30, "PORT")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_a_missing_setting_is_one_line_before_uvicorn_starts(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "jobhub", "serve", "--port", str(free_port())],
        env={**env, "REDIS_URL": redis_url, "JOBHUB_API_KEYS": "k1"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "JOBHUB_TOKEN_SECRET" in result.stderr and "jobhub secret" in result.stderr


def test_sigterm_stops_the_server_promptly_with_a_stream_open(serve: Serve) -> None:
    # An SSE stream never ends on its own and uvicorn waits for open responses: jobhub's
    # streams end when the server stops (streaming/sse.py), and the graceful-shutdown
    # timeout bounds the wait for any response that would not.
    proc, base = serve()
    with httpx.stream("GET", base + "/events", timeout=10) as stream:
        assert stream.status_code == 200
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(httpx.HTTPError):
            for _ in stream.iter_raw():
                pass  # until the server ends the stream
        assert proc.wait(10) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < GRACEFUL_SHUTDOWN_SECONDS + 2
