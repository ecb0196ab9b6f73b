"""The commands and code of the README and the documentation pages (docs/*.md), run as
written against the real stack: docs that rot are bugs. (Their HTML and JavaScript run in
Chromium, in tests/browser/test_browser.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from jobhub import Client
from jobhub.client.events import LogEntry
from jobhub.client.exits import EXIT_CODES
from jobhub.core.batch import BatchSnapshot, decode_batch
from jobhub.core.settings import _ENV
from jobhub.core.snapshot import Snapshot, Status, decode
from jobhub.dev import demo
from jobhub.dev.server import free_port
from jobhub.webhooks.deliveries import sign
from tests.support import readme
from tests.support.readme import README, ROOT, blocks, fences, python_block, shell_lines

BIN = Path(sys.executable).parent  # where `jobhub`, `arq`, `uvicorn` and `honcho` are


def test_every_setting_is_in_the_configuration_table() -> None:
    for field, (variable, _) in _ENV.items():
        assert f"| `{variable}` |" in README, f"{variable} ({field}) is not documented"


def test_every_exit_code_is_in_the_table() -> None:
    # The rows of the table headed "| code | meaning |", up to the blank line that ends it
    # (other tables start rows with numbers too).
    table = README.split("\n| code | meaning |\n", 1)[1].split("\n\n", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \| ", table, re.M)}
    assert documented == set(EXIT_CODES)


def test_the_curl_commands_work_as_written(base_url: str) -> None:
    job_id = httpx.post(
        base_url + "/jobs", json={"function": "demo.count", "kwargs": {"steps": 40, "delay": 0.25}}
    ).json()["job_id"]
    curls = [line for line in shell_lines() if line.startswith("curl")]
    assert len(curls) >= 8
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
        # The commands that run a server are run by their own tests (the table below).
        if line.startswith("jobhub archive "):
            continue  # they need a database: tests/system/test_archive.py runs them
        if line.startswith("jobhub ") and " dev" not in line and " serve" not in line:
            commands += [c.strip() for c in re.split(r"\s{3,}", line) if c.strip()]
    assert len(commands) >= 5
    for command in commands:
        argv = command.replace("[", "").replace("]", "").replace("<id>", job_id).split()
        result = subprocess.run(
            [str(BIN / "jobhub"), *argv[1:]],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "COLUMNS": "100", "JOBHUB_URL": base_url},
        )  # fmt: skip
        # cancel may meet the job already finished (6: the API said 409); all else succeeds.
        allowed = {0, 6} if argv[1] == "cancel" else {0}
        assert result.returncode in allowed, (command, result.stdout, result.stderr)


def test_the_activation_line_puts_every_command_on_path() -> None:
    (line,) = [line for line in shell_lines() if line.startswith("source ")]
    venv = ROOT / ".venv" if (ROOT / ".venv").exists() else Path(sys.prefix)
    line = line.replace(".venv", str(venv))  # the same, wherever this suite's venv lives
    names = ["jobhub", "arq", "uvicorn", "honcho"]
    result = subprocess.run(
        ["bash", "-c", f"{line} && command -v {' '.join(names)}"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = [Path(path) for path in result.stdout.split()]
    assert [path.name for path in found] == names
    assert {path.parent.resolve() for path in found} == {(venv / "bin").resolve()}


def wait_until_healthy(base: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "the stack exited"
        try:
            if httpx.get(base + "/healthz", timeout=1).json().get("functions", 0) > 0:
                return
        except (httpx.HTTPError, ValueError):
            pass
        assert time.monotonic() < deadline, "the stack did not come up"
        time.sleep(0.1)


def test_your_own_job_in_five_minutes(tmp_path: Path) -> None:
    """The README's own-job path, in a project outside this repository: its modules, then
    its `jobhub dev --worker-settings` and `jobhub submit` lines, as written."""
    (tmp_path / "reports.py").write_text(python_block("reports.py"))
    (tmp_path / "files.py").write_text(python_block("files.py"))
    (tmp_path / "export.py").write_text(python_block("export.py"))
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "workers.py").write_text(
        "import export, files, reports\n"
        "from jobhub import Settings, worker_settings\n"
        "functions = [reports.build, files.checksum, export.export]\n"
        "WorkerSettings = worker_settings(functions, Settings.from_env())\n"
    )
    # The README repeats the submit line of Getting started: one command, however often shown.
    (dev_line,) = {line for line in shell_lines() if line.startswith("jobhub dev ")}
    (submit_line,) = {line for line in shell_lines() if "submit reports.build" in line}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # a private Redis
    env["PATH"] = f"{BIN}:{env['PATH']}"
    dev = subprocess.Popen(
        ["bash", "-c", f"exec {dev_line}"], cwd=tmp_path, env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, dev)
        submitted = subprocess.run(
            ["bash", "-c", submit_line.replace(".venv/bin/", f"{BIN}/")],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env={**env, "JOBHUB_URL": base, "COLUMNS": "100"},
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        assert 'result: {"pages":3}' in submitted.stdout
        rows: list[Any] = []
        logs: list[LogEntry] = []
        with Client(base) as hub:
            job = hub.submit("files.checksum", paths=[str(ROOT / "README.md")])
            final = hub.wait(job.job_id, timeout=30)
            exported = hub.wait(
                hub.submit("rows.export", count=5).job_id,
                timeout=30, on_output=rows.append, on_log=logs.append,
            )  # fmt: skip
        digest = hashlib.sha256((ROOT / "README.md").read_bytes()).hexdigest()
        assert final.result == {str(ROOT / "README.md"): digest}
        assert exported.result == {"rows": 5}
        assert rows == [{"n": n, "square": n * n} for n in range(1, 6)]
        assert [(e.level, e.message) for e in logs] == [
            ("info", "exporting 5 rows"), ("debug", "all rows written")
        ]  # fmt: skip
    finally:
        dev.send_signal(signal.SIGINT)
        out, _ = dev.communicate(timeout=30)
    assert dev.returncode == 0, out


def test_the_worker_settings_snippet_is_the_repositorys_plus_one_module(tmp_path: Path) -> None:
    snippet = python_block("worker_settings.py")
    (tmp_path / "reports.py").write_text(python_block("reports.py"))
    (tmp_path / "worker_settings.py").write_text(snippet)
    shown = subprocess.run(
        [sys.executable, "-c", "import worker_settings as w; print([f.name for f in w.WorkerSettings.functions])"],  # noqa: E501
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == str([f.name for f in demo.FUNCTIONS] + ["reports.build"])
    # Undo the two changes the README names, and it is the repository's file.
    undone = snippet.replace("import reports\n", "").replace(
        "[*demo.FUNCTIONS, reports.build]", "demo.FUNCTIONS"
    )
    code = (ROOT / "worker_settings.py").read_text().split('"""\n\n', 1)[1]
    assert undone.removeprefix("# worker_settings.py\n") == code


def test_the_python_client_snippet_runs_as_written(base_url: str, tmp_path: Path) -> None:
    script = tmp_path / "follow.py"
    script.write_text(python_block("follow.py").replace("http://127.0.0.1:8000", base_url))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "finished 100.0" in lines
    assert lines[-2:] == ["{'steps': 5}", "{'steps': 3}"]


def test_the_output_snippet_runs_as_written(base_url: str, tmp_path: Path) -> None:
    script = tmp_path / "answer.py"
    script.write_text(python_block("answer.py").replace("http://127.0.0.1:8000", base_url))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # The words typed out as they came, each log line on a line of its own, then True.
    *typed, last = result.stdout.splitlines()
    assert last == "True"
    logs = [line for line in typed if line.startswith("[")]
    assert logs == ["[info] 10 words so far", "[info] 20 words so far"]
    text = " ".join(line for line in typed if not line.startswith("["))
    assert text.split() == [f"w{i}" for i in range(20)]


def test_every_picture_the_docs_show_is_there() -> None:
    shown = readme.pictures()
    assert ROOT / "docs" / "output.png" in shown and ROOT / "docs" / "demo.png" in shown
    for picture in shown:
        data = picture.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", picture
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
        assert 20_000 < len(data) < 1_000_000, (picture, len(data))  # a page, not a blank
        assert 390 <= width <= 2000 and 300 <= height <= 3000, (picture, width, height)


async def test_the_webhook_receiver_snippet_accepts_only_signed_deliveries() -> None:
    receiver = types.ModuleType("receiver")
    exec(compile(python_block("receiver.py"), "receiver.py", "exec"), receiver.__dict__)
    app = Starlette(routes=[Route("/hook", receiver.receive, methods=["POST"])])
    body = b'{"job_id": "j1", "status": "finished"}'
    good = sign(body, receiver.SECRET)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://app"
    ) as client:
        answers = [
            (await client.post("/hook", content=body, headers=headers)).status_code
            for headers in (
                {"Jobhub-Signature": good},
                {"Jobhub-Signature": sign(body, "another secret")},
                {"Jobhub-Signature": sign(body, receiver.SECRET, int(time.time()) - 3600)},
                {},
            )
        ]
    assert answers == [204, 400, 400, 400]


def test_the_snapshot_example_is_one_in_wire_order() -> None:
    (example,) = [block.code for block in blocks("json") if '"job_id"' in block.code]
    assert list(json.loads(example)) == list(Snapshot.__struct_fields__)
    assert decode(example).status is Status.RUNNING
    # The batch's (docs/batches.md), in its own wire order.
    (batch,) = [block.code for block in blocks("json") if '"batch_id": "b1"' in block.code]
    assert list(json.loads(batch)) == list(BatchSnapshot.__struct_fields__)
    assert decode_batch(batch).counts.running == 1


def test_every_fenced_block_is_of_a_kind_a_test_runs() -> None:
    langs = fences()
    # The bare ones are diagrams (the picture at the top, the package tree in "How it is
    # built"); the html and js blocks run in Chromium.
    assert set(langs) <= {"", "sh", "python", "json", "html", "js", "jsx"}, set(langs)
    assert langs.count("") == 2
    assert len(langs) == sum(len(blocks(lang)) for lang in set(langs) - {""}) + 2
    # tests/browser/test_browser.py runs each: the page snippet, the cross-origin tag,
    # worker.js; tests/browser/test_browser_output.py the output snippet;
    # tests/browser/test_batch_pages.py the two batch snippets.
    assert len(blocks("html")) + len(blocks("js")) == 6, "a new one needs a browser test"


# Each ```jsx block of the README and the pages (React components), and the browser test
# that bundles it with esbuild and runs it as written.
JSX_BLOCKS = {
    "MyJobs.jsx": "tests/browser/test_react_hooks.py::test_the_docs_components_run_as_written",
    "JobProgress.jsx": "tests/browser/test_react_hooks.py::test_the_docs_components_run_as_written",
}


def test_every_jsx_block_is_run() -> None:
    assert sorted({block.name for block in blocks("jsx")}) == sorted(JSX_BLOCKS)
    for name, test in JSX_BLOCKS.items():
        path, _, function = test.rpartition("::")
        assert f"def {function}(" in (ROOT / path).read_text(), (name, test)
        readme.jsx_block(name)  # one text, however often the docs show it


# Each ```python block of the README and the pages, and the test that runs it as written.
PYTHON_BLOCKS = {
    "reports.py": "test_your_own_job_in_five_minutes",
    "files.py": "test_your_own_job_in_five_minutes",
    "worker_settings.py": "test_the_worker_settings_snippet_is_the_repositorys_plus_one_module",
    "follow.py": "test_the_python_client_snippet_runs_as_written",
    "export.py": "test_your_own_job_in_five_minutes",
    "answer.py": "test_the_output_snippet_runs_as_written",
    "receiver.py": "test_the_webhook_receiver_snippet_accepts_only_signed_deliveries",
    "backend.py": (
        "tests/system/test_scoped_tokens.py::"
        "test_the_readme_backend_mints_a_token_for_its_signed_in_user"
    ),
    "batch.py": "tests/system/test_batch_client.py::test_the_batch_snippet_runs_as_written",
    "app.py": (
        "tests/browser/test_browser.py::test_the_readme_mount_snippet_serves_jobhub_under_a_prefix"
    ),
}


def test_every_python_block_is_run() -> None:
    names = {block.name for block in blocks("python")}
    assert sorted(names) == sorted(PYTHON_BLOCKS), "name each block in its first line"
    for name, test in PYTHON_BLOCKS.items():
        path, _, function = test.rpartition("::")
        source = (ROOT / path).read_text() if path else Path(__file__).read_text()
        assert f"def {function}(" in source, (name, test)
        compile(python_block(name), name, "exec")


@pytest.mark.parametrize(
    ("documented", "covered_by"),
    [
        (
            "./scripts/dev",
            "tests/system/test_stack.py::test_dev_command_runs_the_stack_and_ctrl_c_leaves_nothing_behind",
        ),
        ("./scripts/test", ".ci/run, every CI run"),
        (
            "arq worker_settings.WorkerSettings",
            "every Stack: running_stack in tests/support/servers.py",
        ),
        (
            "jobhub serve --port 8000",
            "tests/system/test_serve.py::test_serve_answers_and_refuses_a_huge_request_head_with_431",
        ),
        (
            "PORT=8000 honcho start",
            "tests/system/test_stack.py::test_procfile_with_honcho_runs_web_and_worker",
        ),
        (
            "jobhub dev --worker-settings myapp.workers.WorkerSettings",
            "tests/system/test_readme.py::test_your_own_job_in_five_minutes",
        ),
        (
            ".venv/bin/jobhub submit reports.build --kwarg pages=3 --follow",
            "tests/system/test_readme.py::test_your_own_job_in_five_minutes",
        ),
        (
            "source .venv/bin/activate",
            "tests/system/test_readme.py::test_the_activation_line_puts_every_command_on_path",
        ),
        (
            "jobhub archive migrate",
            "tests/system/test_archive.py::test_the_production_recipe_runs_as_written",
        ),
        (
            "jobhub archive run --metrics-port 9108",
            "tests/system/test_archive.py::test_the_production_recipe_runs_as_written",
        ),
    ],
)
def test_the_other_commands_are_run_elsewhere(documented: str, covered_by: str) -> None:
    assert documented in shell_lines(), documented
    path = ROOT / covered_by.split("::")[0].split(",")[0]
    if covered_by.startswith("tests/"):
        assert f"def {covered_by.split('::')[1]}(" in path.read_text()
    elif covered_by.startswith(".ci"):
        assert "scripts/test" in path.read_text()


def test_every_shell_command_is_tested() -> None:
    known = (
        "curl", "jobhub ", "./scripts/dev", "./scripts/test", "arq ", "uvicorn ",
        "PORT=8000 honcho ",
        ".venv/bin/jobhub submit reports.", "source .venv/bin/activate",
        "export JOBHUB_ARCHIVE_URL=",
    )  # fmt: skip
    untested = [line for line in shell_lines() if not line.startswith(known)]
    assert untested == []


def test_every_page_is_on_the_site_and_the_readme_stays_short() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in readme.PAGES[1:]:
        assert f": {page.name}\n" in nav, f"{page.name} is not in mkdocs.yml's nav"
    # The README is what a newcomer reads first; the rest belongs on a page of the site.
    assert len(readme.PAGES[0].read_text().splitlines()) <= 200
