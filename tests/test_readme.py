"""The README's commands, run as written against the real stack: docs that rot are bugs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from jobhub.settings import _ENV

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def shell_lines() -> list[str]:
    """Each command of the README's ```sh blocks, continuations joined, comments dropped."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def test_every_setting_is_in_the_configuration_table() -> None:
    for field, (variable, _) in _ENV.items():
        assert f"| `{variable}` |" in README, f"{variable} ({field}) is not documented"


def test_the_curl_commands_work_as_written(base_url: str) -> None:
    job_id = httpx.post(
        base_url + "/jobs", json={"function": "demo.count", "kwargs": {"steps": 40, "delay": 0.25}}
    ).json()["job_id"]
    curls = [line for line in shell_lines() if line.startswith("curl")]
    assert len(curls) >= 7
    for line in curls:
        command = line.replace("localhost:8000", base_url.removeprefix("http://"))
        command = command.replace("<id>", job_id)
        if " -N " in command:  # a stream: a moment of it is enough here
            command = command.replace("curl -N", "curl -N --max-time 2")
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        assert result.returncode in (0, 28), (line, result.stderr)  # 28: --max-time reached
        assert '{"error":{' not in result.stdout, (line, result.stdout[:300])
        assert "data: {" in result.stdout or "{" in result.stdout, line


def test_the_cli_commands_work_as_written(base_url: str) -> None:
    job_id = httpx.post(
        base_url + "/jobs", json={"function": "demo.count", "kwargs": {"steps": 2, "delay": 0.1}}
    ).json()["job_id"]
    commands = []
    for line in shell_lines():
        if line.startswith("jobhub ") and " dev" not in line:
            commands += [c.strip() for c in re.split(r"\s{3,}", line) if c.strip()]
    assert len(commands) >= 5
    for command in commands:
        argv = command.replace("[", "").replace("]", "").replace("<id>", job_id).split()
        result = subprocess.run(
            [sys.executable, "-m", "jobhub", *argv[1:], "--url", base_url],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "100"},
        )  # fmt: skip
        # cancel may meet the job already finished (6: the API said 409); all else succeeds.
        allowed = {0, 6} if argv[1] == "cancel" else {0}
        assert result.returncode in allowed, (command, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("documented", "covered_by"),
    [
        (
            "./scripts/dev",
            "tests/test_stack.py::test_dev_command_runs_the_stack_and_ctrl_c_leaves_nothing_behind",
        ),
        ("./scripts/test", ".ci/run, every CI run"),
        ("arq worker_settings.WorkerSettings", "every Stack in tests/conftest.py"),
        ("uvicorn --factory jobhub.app:create_app --port 8000", "every Stack in tests/conftest.py"),
        ("honcho start", "tests/test_stack.py::test_procfile_with_honcho_runs_web_and_worker"),
    ],
)
def test_the_other_commands_are_run_elsewhere(documented: str, covered_by: str) -> None:
    assert documented in shell_lines(), documented
    path = Path(__file__).resolve().parent.parent / covered_by.split("::")[0].split(",")[0]
    if covered_by.startswith("tests/"):
        assert covered_by.split("::")[1] in path.read_text()
    elif covered_by.startswith(".ci"):
        assert "scripts/test" in path.read_text()


def test_every_shell_command_is_tested() -> None:
    known = ("curl", "jobhub ", "./scripts/dev", "./scripts/test", "arq ", "uvicorn ", "honcho ")
    untested = [line for line in shell_lines() if not line.startswith(known)]
    assert untested == []
