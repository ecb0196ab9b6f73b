"""The ``jobhub`` command.

jobhub dev            Redis (private, if REDIS_URL is unset), a worker and the web app
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from types import FrameType
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from .client import Client
from .devserver import RedisServer, Stack
from .exceptions import ApiError, ConfigError
from .settings import Settings
from .snapshot import Snapshot, Status

__all__ = ["main"]


@click.group()
def main() -> None:
    """jobhub: live progress for background jobs."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web app binds.")
@click.option("--port", default=8000, show_default=True, help="Port of the web app.")
@click.option("--workers", default=1, show_default=True, help="ARQ worker processes.")
def dev(host: str, port: int, workers: int) -> None:
    """Run the whole stack until Ctrl-C; stops everything it started."""
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    with ExitStack() as resources:
        try:
            redis_url = os.environ.get("REDIS_URL")
            if not redis_url:
                redis_url = resources.enter_context(RedisServer()).url
                click.echo(f"jobhub: started a private redis-server at {redis_url}")
            Settings.from_env({**os.environ, "REDIS_URL": redis_url})
            stack = resources.enter_context(Stack(redis_url, host=host, port=port, workers=workers))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"jobhub: open {stack.base_url}/  (Ctrl-C stops everything)")
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping:
            if any(p.poll() is not None for p in stack.processes):
                click.echo("jobhub: a process of the stack exited; stopping the rest", err=True)
                break
            time.sleep(0.2)
        click.echo("jobhub: stopping")


EXIT = {Status.FINISHED: 0, Status.FAILED: 3, Status.CANCELED: 4}
EXIT_TIMEOUT, EXIT_API, EXIT_INTERRUPTED = 5, 6, 130

url_option = click.option(
    "--url", envvar="JOBHUB_URL", default="http://127.0.0.1:8000", show_default=True,
    help="The jobhub web app (JOBHUB_URL).",
)  # fmt: skip
key_option = click.option("--api-key", envvar="JOBHUB_API_KEY", help="API key (JOBHUB_API_KEY).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
timeout_option = click.option("--timeout", type=float, help="Stop waiting after this many s.")


def _value(raw: str) -> Any:
    """A JSON value, or the text itself when it is not JSON (``--kwarg name=Ada``)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@main.command()
@click.argument("function")
@click.option("--arg", "args", multiple=True, help="A positional argument (JSON or text).")
@click.option("--kwarg", "kwargs", multiple=True, help="NAME=VALUE (VALUE as JSON or text).")
@click.option("--follow", is_flag=True, help="Show its progress until it ends.")
@timeout_option
@json_option
@url_option
@key_option
def submit(
    function: str,
    args: tuple[str, ...],
    kwargs: tuple[str, ...],
    follow: bool,
    timeout: float | None,
    as_json: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Start FUNCTION as a job."""
    named = {}
    for item in kwargs:
        name, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--kwarg")
        named[name] = _value(raw)
    with Client(url, api_key=api_key) as hub:
        job = _call(lambda: hub.submit(function, *map(_value, args), **named))
        if not follow:
            _print(job, as_json)
            return
        _follow(hub, job.job_id, timeout, as_json)


@main.command()
@click.argument("job_id")
@json_option
@url_option
@key_option
def status(job_id: str, as_json: bool, url: str, api_key: str | None) -> None:
    """Print a job's snapshot; exits as the job did (0 while it is still at work)."""
    with Client(url, api_key=api_key) as hub:
        snapshot = _call(lambda: hub.get(job_id))
    _print(snapshot, as_json)
    sys.exit(EXIT.get(snapshot.status, 0))


@main.command()
@click.argument("job_id")
@timeout_option
@json_option
@url_option
@key_option
def watch(job_id: str, timeout: float | None, as_json: bool, url: str, api_key: str | None) -> None:
    """Show a job's progress until it ends."""
    with Client(url, api_key=api_key) as hub:
        _follow(hub, job_id, timeout, as_json)


@main.command()
@click.argument("job_id")
@json_option
@url_option
@key_option
def cancel(job_id: str, as_json: bool, url: str, api_key: str | None) -> None:
    """Cancel a job."""
    with Client(url, api_key=api_key) as hub:
        _print(_call(lambda: hub.cancel(job_id)), as_json)


def _call(request: Any) -> Snapshot:
    try:
        snapshot: Snapshot = request()
    except ApiError as exc:
        click.echo(f"jobhub: {exc}", err=True)
        sys.exit(EXIT_API)
    return snapshot


def _print(snapshot: Snapshot, as_json: bool) -> None:
    if as_json:
        click.echo(msgspec.json.encode(snapshot).decode())
    else:
        line = (
            f"{snapshot.job_id}  {snapshot.status.value}  {snapshot.percent:g}%  {snapshot.message}"
        )
        if snapshot.error is not None:
            line += f"  ({snapshot.error.type}: {snapshot.error.detail})"
        click.echo(line)


def _follow(hub: Client, job_id: str, timeout: float | None, as_json: bool) -> None:
    last: Snapshot | None = None
    try:
        snapshots = hub.events(job_id, timeout=timeout)
        if as_json:
            for last in snapshots:
                click.echo(msgspec.json.encode(last).decode())
        else:
            last = _progress(snapshots, job_id)
    except KeyboardInterrupt:
        click.echo(f"jobhub: stopped following; job {job_id} goes on", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ApiError as exc:
        click.echo(f"jobhub: {exc}", err=True)
        sys.exit(EXIT_API)
    if last is None or not last.is_terminal:
        click.echo(f"jobhub: job {job_id} did not end within {timeout} s", err=True)
        sys.exit(EXIT_TIMEOUT)
    if not as_json:
        _print(last, as_json=False)
    sys.exit(EXIT.get(last.status, 0))


def _progress(snapshots: Iterable[Snapshot], job_id: str) -> Snapshot | None:
    last = None
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(job_id, total=100)
        for last in snapshots:
            label = f"{last.status.value}: {last.message}" if last.message else last.status.value
            bar.update(task, completed=last.percent, description=label)
    return last
