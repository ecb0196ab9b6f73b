"""The jobhub command against the real stack, run as a user would, in a subprocess."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobhub import Client
from jobhub.client.exits import EXIT_CODES
from jobhub.client.screen import Screen
from jobhub.core.snapshot import Snapshot
from jobhub.dev.server import free_port
from tests.support.servers import running_stack
from tests.support.waiting import wait_until_sync


def jobhub(base_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(*args, "--url", base_url, timeout=timeout)


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The command as a user types it; COLUMNS and FORCE_COLOR make rich draw its bar."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "jobhub", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**base, "COLUMNS": "100", "FORCE_COLOR": "1", **(env or {})},
    )  # fmt: skip


def test_submit_follow_shows_a_progress_bar_and_exits_0(base_url: str) -> None:
    done = jobhub(
        base_url, "submit", "demo.count", "--kwarg", "steps=4", "--kwarg", "delay=0.1", "--follow"
    )
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "━" in done.stderr  # the bar, drawn to the terminal
    assert "finished" in done.stdout
    assert 'result: {"steps":4}' in done.stdout  # what the job returned, not only "finished"


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


@pytest.mark.parametrize("output", [[], ["--output"]], ids=["snapshots", "output"])
def test_a_reader_that_stops_reading_ends_the_command_quietly(
    base_url: str, output: list[str]
) -> None:
    """`jobhub submit ... --follow --json | head -1`: once the reader is gone the command
    exits 141, as a program that SIGPIPE ended, with nothing on stderr (no error line, no
    stream left for the garbage collector to close after its loop stopped)."""
    steps = ["--kwarg", "steps=30", "--kwarg", "delay=0.05"]
    argv = ["submit", "demo.count", *steps, "--follow", "--json", *output, "--url", base_url]
    read_end, write_end = os.pipe()
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobhub", *argv], stdout=write_end, stderr=subprocess.PIPE, env=base
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = json.loads(reader.readline())  # one line, then stop reading, as head -1 does
    assert first["function"] == "demo.count"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err.decode()
    assert err == b""


def test_args_take_json_or_text(base_url: str) -> None:
    done = jobhub(
        base_url, "submit", "demo.count", "--arg", "2", "--arg", "0.05", "--follow", "--json"
    )
    assert json.loads(done.stdout.splitlines()[-1])["result"] == {"steps": 2}
    bad = jobhub(base_url, "submit", "demo.count", "--kwarg", "steps")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr


def open_streams(base_url: str) -> float:
    """The web app's count of open event streams, from its /metrics."""
    for family in text_string_to_metric_families(httpx.get(base_url + "/metrics").text):
        if family.name == "jobhub_open_streams":
            return float(family.samples[0].value)
    return 0.0


def test_ctrl_c_stops_following_not_the_job(base_url: str) -> None:
    streams = open_streams(base_url)
    job_id = httpx.post(
        base_url + "/jobs", json={"function": "demo.count", "kwargs": {"steps": 30, "delay": 0.2}}
    ).json()["job_id"]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "jobhub", "watch", job_id, "--url", base_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a shell running the suite in the background ignores SIGINT,
        # and its children would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    # Once its stream is open the command is following: Ctrl-C then stops that, not the
    # start of Python.
    wait_until_sync(lambda: open_streams(base_url) > streams, limit=20, what="the stream")
    watcher.send_signal(signal.SIGINT)
    _, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 130
    assert "goes on" in err
    snapshot = httpx.get(f"{base_url}/jobs/{job_id}").json()
    assert snapshot["status"] == "running"  # still at work
    httpx.post(f"{base_url}/jobs/{job_id}/cancel")


@pytest.fixture
def dead_url() -> str:
    """An address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "some-job", "--url", "{url}"],
        ["--url", "{url}", "status", "some-job"],
        ["watch", "some-job", "--url", "{url}"],
        ["submit", "demo.count", "--follow", "--url", "{url}"],
        ["cancel", "some-job", "--json", "--url", "{url}"],
    ],
)
def test_a_server_that_is_down_is_one_line_and_exit_7(dead_url: str, argv: list[str]) -> None:
    result = run(*(a.replace("{url}", dead_url) for a in argv), timeout=30)
    assert result.returncode == 7, result.stderr
    assert result.stderr.splitlines() == [
        f"jobhub: cannot connect to {dead_url} (Connection refused): "
        "is it running? Point --url or JOBHUB_URL at it"
    ]
    assert result.stdout == ""


def test_jobhub_url_names_the_app_for_every_command(dead_url: str, base_url: str) -> None:
    down = run("status", "some-job", env={"JOBHUB_URL": dead_url})
    assert down.returncode == 7 and dead_url in down.stderr
    job_id = json.loads(jobhub(base_url, "submit", "demo.noop", "--json").stdout)["job_id"]
    for argv, env in [
        (["status", job_id], {"JOBHUB_URL": base_url}),
        (["--url", base_url, "status", job_id], {}),
        (["--url", dead_url, "status", job_id, "--url", base_url], {}),  # the later one wins
        (["status", job_id, "--url", base_url], {"JOBHUB_URL": dead_url}),
    ]:
        result = run(*argv, env=env)
        assert result.returncode in (0, 3, 4), (argv, result.stderr)
        assert result.stdout.startswith(job_id), (argv, result.stdout)


def test_an_app_that_does_not_answer_is_exit_8(silent_url: str) -> None:
    started = time.monotonic()
    result = run("--request-timeout", "0.5", "status", "some-job", "--url", silent_url)
    assert result.returncode == 8, result.stderr
    assert result.stderr.splitlines() == [
        f"jobhub: {silent_url} did not answer within 0.5 s (--request-timeout)"
    ]
    assert time.monotonic() - started < 20


def test_debug_shows_the_traceback(dead_url: str) -> None:
    result = run("--debug", "status", "some-job", "--url", dead_url)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConnectError" in result.stderr


@pytest.mark.parametrize(
    "url", ["localhost:8000", "ftp://example.com", "http://[::1", "http://127.0.0.1:99999"]
)
def test_a_url_that_is_not_http_is_a_usage_error(url: str) -> None:
    # (A malformed one used to leave the command hanging at exit, its loop thread unstopped.)
    result = run("status", "some-job", "--url", url)
    assert result.returncode == 2
    assert result.stderr.startswith(f"jobhub: --url {url!r} is not a usable http:// or https://")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("job_id", ["../healthz", "..", "a/b", "x" * 65])
def test_an_id_that_is_no_job_id_is_refused_before_any_request(job_id: str) -> None:
    # Sent as it is, "../healthz" would have fetched another resource.
    result = run("status", job_id, "--url", "http://127.0.0.1:1")
    assert result.returncode == 6, result.stderr
    assert "invalid job id" in result.stderr


def test_watch_of_an_unknown_job_says_so_before_drawing_anything(base_url: str) -> None:
    result = jobhub(base_url, "watch", "nope")
    assert result.returncode == 6
    assert result.stderr == "jobhub: JobNotFound: no job 'nope'\n"  # no "nope 0%" bar first


def test_help_lists_every_exit_code() -> None:
    result = run("--help")
    assert result.returncode == 0
    for code, meaning in EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in result.stdout


def test_a_malformed_setting_is_named_with_what_it_accepts() -> None:
    result = run("dev", env={"JOBHUB_CORS_ORIGINS": "*"}, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("jobhub: JOBHUB_CORS_ORIGINS='*' is not valid: expected ")
    assert "https://app.example.com" in result.stderr  # the accepted form, by example
    assert "_origins" not in result.stderr  # no internal name


def test_a_job_id_that_starts_with_a_dash_is_taken_as_the_id(base_url: str) -> None:
    job_id = f"-x{os.urandom(4).hex()}"  # ids are [A-Za-z0-9_-]: a random one may start so
    created = httpx.post(base_url + "/jobs", json={"function": "demo.noop", "job_id": job_id})
    assert created.status_code == 202, created.text
    for command in ("status", "watch", "cancel"):
        result = jobhub(base_url, command, job_id, "--json")
        assert result.returncode in (0, 6), (command, result.stderr)  # 6: cancel of an ended job
        if result.returncode == 0:
            assert json.loads(result.stdout.splitlines()[-1])["job_id"] == job_id


def words(count: int) -> str:
    return "".join(f"w{i} " for i in range(count))


def test_submit_follow_output_types_the_text_out_as_it_comes(base_url: str) -> None:
    argv = ["submit", "demo.tokens", "--kwarg", "count=40", "--kwarg", "delay=0.05"]
    typing = subprocess.Popen(
        [sys.executable, "-m", "jobhub", *argv, "--follow", "--output", "--url", base_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "100", "FORCE_COLOR": "1"},
    )  # fmt: skip
    assert typing.stdout is not None
    first = typing.stdout.read(len("w0 w1 w2 "))  # blocks until the job has written them
    running = httpx.get(f"{base_url}/jobs?function=demo.tokens&limit=1").json()["jobs"][0]
    # They came as the job wrote them, not at its end.
    assert running["status"] in ("started", "running"), running
    rest, err = typing.communicate(timeout=60)
    assert typing.returncode == 0, err
    # stdout holds the text alone, and a newline to end it; the rest went to stderr.
    assert (first + rest).decode() == words(40) + "\n"
    # stderr as the terminal would show it: the log lines above the bar, then the result.
    shown = screen_of(err.decode(), 100)
    assert [line for line in shown if line.startswith("info:")] == [
        f"info: {n} words so far" for n in (10, 20, 30, 40)
    ]
    bar = next(i for i, line in enumerate(shown) if line.startswith("finished ━"))
    assert shown[bar].endswith("100%") and shown[bar - 1] == "info: 40 words so far"
    assert shown[bar + 1].endswith("finished  100%")
    assert "".join(shown[bar + 2 :]) == f'result: "{words(40)}"'


def test_watch_prints_log_lines_and_a_failed_jobs_traceback(base_url: str) -> None:
    job_id = httpx.post(
        base_url + "/jobs", json={"function": "demo.tokens", "kwargs": {"count": 30, "delay": 0}}
    ).json()["job_id"]
    watched = jobhub(base_url, "watch", job_id)  # a late joiner: the log is replayed
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.startswith(f"{job_id}  finished")
    lines = [line for line in watched.stderr.split("\n") if "words so far" in line]
    assert len(lines) == 3 and all("info:" in line for line in lines)
    assert "w0" not in watched.stderr  # no --output: no output (the result alone has it)

    failed = jobhub(
        base_url, "submit", "demo.fail", "--kwarg", "after=1", "--kwarg", "delay=0.05", "--follow"
    )
    assert failed.returncode == 3
    assert "error:" in failed.stderr and "Traceback (most recent call last):" in failed.stderr
    assert "ValueError: demo failure after 1 steps" in failed.stderr
    assert "Traceback" not in failed.stdout  # the snapshot keeps type and detail only


def test_json_output_is_every_event_one_per_line(base_url: str) -> None:
    done = jobhub(
        base_url, "submit", "demo.tokens", "--kwarg", "count=20", "--kwarg", "delay=0.01",
        "--output", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    chunks = [e["data"] for e in events if e.get("kind") == "output"]
    logs = [e["message"] for e in events if e.get("kind") == "log"]
    snapshots = [e for e in events if "kind" not in e]
    assert "".join(chunks) == words(20)
    assert logs == ["10 words so far", "20 words so far"]
    assert [s["seq"] for s in snapshots] == sorted({s["seq"] for s in snapshots})
    assert events[-1] == snapshots[-1] and snapshots[-1]["status"] == "finished"


def test_output_that_is_not_text_is_written_as_json_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Screen(Snapshot.queued("j1", "rows.export"), output=True) as screen:
        for data in ["a", "b", {"row": 1}, [1, "é"], "c\n", None, "tail"]:
            screen.chunk(data)
    assert capsys.readouterr().out == 'ab\n{"row":1}\n[1,"é"]\nc\nnull\ntail\n'


def screen_of(raw: str, width: int) -> list[str]:
    """The rows a terminal shows after ``raw``: enough of a VT100 for what rich writes while
    it draws a live display (cursor up, erase line, colours)."""
    rows: list[list[str]] = [[]]
    row = column = 0
    codes = re.compile(r"\x1b\[\??([0-9;]*)([A-Za-z])")
    at = 0
    while at < len(raw):
        char = raw[at]
        code = codes.match(raw, at)
        if code:
            argument, command = code.groups()
            if command == "A":
                row = max(0, row - int(argument or 1))
            elif command == "K":
                rows[row] = [] if argument == "2" else rows[row][:column]
            at = code.end()
            continue
        if char == "\r":
            column = 0
        elif char == "\n" or column >= width:
            row, column = row + 1, 0
            rows.extend([] for _ in range(row + 1 - len(rows)))
            if char == "\n":
                at += 1
                continue
        if char != "\r":
            line = rows[row]
            line.extend(" " * (column - len(line)))
            line[column : column + 1] = [char]
            column += 1
        at += 1
    return ["".join(line).rstrip() for line in rows]


def test_on_a_terminal_the_text_is_typed_above_the_bar(base_url: str) -> None:
    """stdout and stderr on one terminal (a pty): the text must not be drawn over by the
    bar, and must end up on the screen whole, once, above the finished bar."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    argv = ["submit", "demo.tokens", "--kwarg", "count=40", "--kwarg", "delay=0.02", "--output"]
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    typing = subprocess.Popen(
        [sys.executable, "-m", "jobhub", *argv, "--url", base_url],
        stdin=secondary, stdout=secondary, stderr=secondary, env={**base, "TERM": "xterm"},
    )  # fmt: skip
    os.close(secondary)
    raw = b""
    while True:
        try:
            data = os.read(primary, 65536)  # EIO once the command has exited
        except OSError:
            break
        if not data:
            break
        raw += data
    os.close(primary)
    assert typing.wait(timeout=60) == 0, raw.decode()
    shown = screen_of(raw.decode(), 60)
    bar = next(i for i, line in enumerate(shown) if line.startswith("finished ━"))
    text = [line for line in shown[:bar] if line.startswith("w")]
    assert " ".join(text).split() == words(40).split()  # every word, once, in order
    assert all(len(line) <= 60 for line in text)
    logs = [line for line in shown[:bar] if line.startswith("info:")]
    assert logs == [f"info: {n} words so far" for n in (10, 20, 30, 40)]


@pytest.fixture(scope="module")
def keyed_url() -> Iterator[str]:
    """A stack of its own that needs an API key (``right-key``); no worker is needed."""
    env = {"JOBHUB_API_KEYS": "right-key", "JOBHUB_TOKEN_SECRET": "cli-test-secret"}
    with running_stack(env=env, workers=0, quiet=True) as stack:
        yield stack.base_url


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_refused_api_key_is_named_as_the_key_given(keyed_url: str, how: str) -> None:
    # The app tries a key it does not know as a job token: "malformed job token" would send
    # the user looking for a token they never gave.
    if how == "option":
        result = run("--api-key", "nope", "status", "job1", "--url", keyed_url)
    else:
        result = run("status", "job1", "--url", keyed_url, env={"JOBHUB_API_KEY": "nope"})
    assert result.returncode == 6
    assert result.stderr.count("\n") == 1, result.stderr
    assert "refused the API key" in result.stderr
    assert "--api-key" in result.stderr and "JOBHUB_API_KEY" in result.stderr
    assert "job token" not in result.stderr


def test_a_missing_api_key_names_the_option_and_the_variable(keyed_url: str) -> None:
    for argv in (["status", "job1"], ["submit", "demo.noop"]):
        result = run(*argv, "--url", keyed_url)
        assert result.returncode == 6, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "needs an API key" in result.stderr
        assert "--api-key" in result.stderr and "JOBHUB_API_KEY" in result.stderr
        assert "Bearer" not in result.stderr


def test_the_right_api_key_gets_the_apis_own_answer(keyed_url: str) -> None:
    result = run("--api-key", "right-key", "status", "job1", "--url", keyed_url)
    assert result.returncode == 6
    assert "JobNotFound" in result.stderr


def test_a_scoped_token_refused_a_job_outside_its_scope_gets_the_servers_reason(
    keyed_url: str,
) -> None:
    # The token is known to the app: "not one of the app's JOBHUB_API_KEYS" would be false.
    with Client(keyed_url, api_key="right-key") as hub:
        scoped = hub.token(scope={"tags": ["user:1"]}, actions=["read"])
    result = run("status", "job1", "--url", keyed_url, env={"JOBHUB_API_KEY": scoped.token})
    assert result.returncode == 6, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "does not let the key or token" in result.stderr
    assert "Forbidden" in result.stderr
    assert "JOBHUB_API_KEYS" not in result.stderr


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_time_limit_that_is_no_number_of_seconds_is_a_usage_error(value: str) -> None:
    # Refused before anything is submitted: nothing listens at this address, and the
    # command never gets as far as finding out (that would be exit 7).
    nowhere = f"http://127.0.0.1:{free_port()}"
    for argv in (
        ["submit", "demo.noop", "--follow", "--timeout", value],
        ["watch", "job1", "--timeout", value],
        ["--request-timeout", value, "status", "job1"],
    ):
        result = run("--url", nowhere, *argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert value in result.stderr


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [(["=3"], "is not NAME=VALUE"), (["steps"], "is not NAME=VALUE"),
     (["steps=1", "steps=2"], "given twice")],
)  # fmt: skip
def test_a_malformed_kwarg_is_a_usage_error_before_anything_is_submitted(
    kwargs: list[str], says: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    options = [part for kwarg in kwargs for part in ("--kwarg", kwarg)]
    result = run("--url", nowhere, "submit", "demo.count", *options)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr


def test_output_implies_follow_only_where_there_is_a_follow() -> None:
    watch = run("watch", "--help")
    assert watch.returncode == 0
    assert "--follow" not in watch.stdout
    assert "Implies --follow" in run("submit", "--help").stdout


def test_secret_prints_a_fresh_random_secret() -> None:
    first, second = run("secret"), run("secret")
    assert first.returncode == 0 and first.stderr == ""
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", first.stdout)
    assert first.stdout != second.stdout


def test_a_missing_token_secret_says_how_to_make_one() -> None:
    result = run("dev", env={"JOBHUB_API_KEYS": "k1"}, timeout=30)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "JOBHUB_TOKEN_SECRET" in result.stderr and "`jobhub secret`" in result.stderr


def test_ctrl_c_before_anything_is_followed_is_exit_130(silent_url: str) -> None:
    """Ctrl-C while the submit waits for its answer: click said "Aborted!" and exited 1,
    which a script could not tell from an error."""
    command = subprocess.Popen(
        [sys.executable, "-m", "jobhub", "--url", silent_url, "submit", "demo.noop", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    time.sleep(3)  # past Python's start: the request is sent, its answer never comes
    command.send_signal(signal.SIGINT)
    _, err = command.communicate(timeout=20)
    assert command.returncode == 130, err
    assert err.splitlines() == ["jobhub: interrupted"]


def test_a_stdout_that_cannot_be_written_is_one_line_not_a_traceback(base_url: str) -> None:
    """A full disk and a closed stdout: once "unexpected OSError" and "unexpected
    AttributeError: 'NoneType' object has no attribute 'isatty'"."""
    argv = [sys.executable, "-m", "jobhub", "--url", base_url, "submit", "demo.tokens"]
    argv += ["--kwarg", "count=20", "--kwarg", "delay=0", "--output"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "jobhub: cannot write to stdout: No space left on device"
    closed = subprocess.run(
        ["bash", "-c", '"$@" >&-', "bash", *argv], capture_output=True, text=True, timeout=60
    )
    assert closed.returncode == 1
    assert closed.stderr == "jobhub: stdout is closed; give it somewhere to go (>/dev/null)\n"
