"""The jobhub command against the real stack, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx


def jobhub(base_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobhub", *args, "--url", base_url],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "100", "FORCE_COLOR": "1"},  # rich: draw the bar
    )  # fmt: skip


def test_submit_follow_shows_a_progress_bar_and_exits_0(base_url: str) -> None:
    done = jobhub(
        base_url, "submit", "demo.count", "--kwarg", "steps=4", "--kwarg", "delay=0.1", "--follow"
    )
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "━" in done.stderr  # the bar, drawn to the terminal
    assert "finished" in done.stdout


def test_exit_codes_tell_failed_canceled_and_timeout_apart(base_url: str) -> None:
    failed = jobhub(
        base_url, "submit", "demo.fail", "--kwarg", "after=1", "--kwarg", "delay=0.05", "--follow"
    )
    assert failed.returncode == 3
    assert "demo failure after 1 steps" in failed.stdout

    started = jobhub(
        base_url, "submit", "demo.count", "--kwarg", "steps=50", "--kwarg", "delay=0.2", "--json"
    )
    job_id = json.loads(started.stdout)["job_id"]
    timed_out = jobhub(base_url, "watch", job_id, "--timeout", "0.5")
    assert timed_out.returncode == 5
    canceled = jobhub(base_url, "cancel", job_id, "--json")
    assert canceled.returncode == 0 and json.loads(canceled.stdout)["status"] == "canceled"
    assert jobhub(base_url, "watch", job_id).returncode == 4
    assert jobhub(base_url, "status", job_id).returncode == 4
    assert jobhub(base_url, "status", "no-such-job").returncode == 6


def test_json_output_is_one_snapshot_per_line(base_url: str) -> None:
    done = jobhub(
        base_url,
        "submit",
        "demo.count",
        "--kwarg",
        "steps=2",
        "--kwarg",
        "delay=0.1",
        "--follow",
        "--json",
    )
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1]["status"] == "finished" and lines[-1]["result"] == {"steps": 2}
    assert [s["seq"] for s in lines] == sorted({s["seq"] for s in lines})


def test_args_take_json_or_text(base_url: str) -> None:
    done = jobhub(
        base_url, "submit", "demo.count", "--arg", "2", "--arg", "0.05", "--follow", "--json"
    )
    assert json.loads(done.stdout.splitlines()[-1])["result"] == {"steps": 2}
    bad = jobhub(base_url, "submit", "demo.count", "--kwarg", "steps")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr


def test_ctrl_c_stops_following_not_the_job(base_url: str) -> None:
    job_id = httpx.post(
        base_url + "/jobs", json={"function": "demo.count", "kwargs": {"steps": 30, "delay": 0.2}}
    ).json()["job_id"]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "jobhub", "watch", job_id, "--url", base_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)
    watcher.send_signal(signal.SIGINT)
    _, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 130
    assert "goes on" in err
    snapshot = httpx.get(f"{base_url}/jobs/{job_id}").json()
    assert snapshot["status"] == "running"  # still at work
    httpx.post(f"{base_url}/jobs/{job_id}/cancel")
