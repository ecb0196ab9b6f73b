"""What a newcomer meets on the first day, run as they would: the dev stack on the newest
Python there is, its start line, the CLI's lines in a log, a client left open, a demo job
given a wrong argument."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx

from .helpers import TERMINAL


def piped(base_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The jobhub command with stdout and stderr in one pipe, as a CI log has them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
    env.pop("FORCE_COLOR", None)  # it would make rich take the pipe for a terminal
    return subprocess.run(
        [sys.executable, "-m", "jobhub", *args, "--url", base_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
        env={**env, "COLUMNS": "100", "TERM": "dumb"},
    )  # fmt: skip


def final(base_url: str, job_id: str, limit: float = 20) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + limit
    while True:
        snap = httpx.get(f"{base_url}/jobs/{job_id}", timeout=5).json()
        if snap["status"] in TERMINAL:
            return snap  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"job did not end: {snap}"
        time.sleep(0.05)


def test_followed_job_in_a_pipe_puts_every_message_on_its_own_line(base_url: str) -> None:
    done = piped(
        base_url, "submit", "demo.tokens", "--kwarg", "count=20", "--kwarg", "delay=0.01",
        "--follow",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    # The bar's last state, then the summary: neither glued to the other.
    assert any(re.fullmatch(r"finished ━+ 100%", line) for line in lines), lines
    assert any(re.fullmatch(r"[A-Za-z0-9_-]{22}  finished  100%", line) for line in lines), lines
    assert "info: 10 words so far" in lines and "info: 20 words so far" in lines, lines
    assert done.stdout.endswith("\n")


def test_watch_that_times_out_in_a_pipe_says_so_on_a_line_of_its_own(base_url: str) -> None:
    job = httpx.post(
        base_url + "/jobs",
        json={"function": "demo.count", "kwargs": {"steps": 3, "delay": 2}},
        timeout=5,
    ).json()
    try:
        result = piped(base_url, "watch", job["job_id"], "--timeout", "0.5")
        assert result.returncode == 5, result.stdout
        expected = f"jobhub: job {job['job_id']} did not end within 0.5 s"
        assert expected in result.stdout.splitlines(), result.stdout
    finally:
        httpx.post(f"{base_url}/jobs/{job['job_id']}/cancel", timeout=5)


def test_a_client_never_closed_lets_the_interpreter_exit() -> None:
    code = (
        "import httpx, jobhub\n"
        "hub = jobhub.Client('http://127.0.0.1:9', timeout=1)\n"
        "try:\n"
        "    hub.get('abc')\n"  # a call made: its loop and connection pool are in use
        "except httpx.HTTPError:\n"
        "    pass\n"
        "print('done', flush=True)\n"
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the interpreter did not exit with a Client left open") from None
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert time.monotonic() - started < 10


def test_a_client_that_is_closed_cannot_be_used_and_closes_twice_quietly() -> None:
    import jobhub

    hub = jobhub.Client("http://127.0.0.1:9")
    hub.close()
    hub.close()


def test_a_demo_argument_of_the_wrong_type_is_named_in_the_failure(base_url: str) -> None:
    result = piped(base_url, "submit", "demo.count", "--kwarg", "steps=abc", "--follow")
    assert result.returncode == 3, result.stdout
    assert "steps must be a whole number from 0 to 10000, got 'abc'" in result.stdout
    assert "at most 10000 steps of at most 60 s" not in result.stdout
    job_id = next(line.split()[0] for line in result.stdout.splitlines() if "  failed  " in line)
    snap = final(base_url, job_id)
    # The snapshot's message is the failure, not the "started" it had a moment before.
    assert snap["message"] == "steps must be a whole number from 0 to 10000, got 'abc'"
    assert snap["error"]["type"] == "TypeError"


def test_each_demo_function_names_the_argument_it_refuses(base_url: str) -> None:
    cases = [
        ("demo.count", {"steps": 3, "delay": "fast"}, "delay must be a number of seconds"),
        ("demo.count", {"steps": True}, "steps must be a whole number"),
        ("demo.count", {"steps": 10_001}, "steps must be a whole number from 0 to 10000"),
        ("demo.tokens", {"count": "many"}, "count must be a whole number"),
        ("demo.fail", {"after": 1.5}, "after must be a whole number"),
    ]
    jobs = []
    for function, kwargs, expected in cases:
        response = httpx.post(
            base_url + "/jobs", json={"function": function, "kwargs": kwargs}, timeout=5
        )
        assert response.status_code == 202, response.text
        jobs.append((response.json()["job_id"], expected))
    for job_id, expected in jobs:
        snap = final(base_url, job_id)
        assert snap["status"] == "failed", snap
        assert snap["message"].startswith(expected), snap
        assert snap["error"]["detail"].startswith(expected), snap
