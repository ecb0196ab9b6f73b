"""The ``jobhub`` command.

    jobhub dev [--port 8000] [--worker-settings module.WorkerSettings]
    jobhub serve [--host H] [--port P] [--web-processes N] [--root-path /x]      jobhub secret
    jobhub [--url URL] submit FUNCTION [--arg A] [--kwarg K=V] [--follow] [--output]
    jobhub status ID      jobhub watch ID [--timeout S] [--output]      jobhub cancel ID

Following a job draws its progress bar on stderr with the job's log lines above it;
``--output`` writes the job's output to stdout as it comes.

``--url`` and ``--api-key`` go before or after the subcommand (or come from ``JOBHUB_URL``
and ``JOBHUB_API_KEY``). Every failure is one line on stderr and an exit code from
``EXIT_CODES`` (exits.py); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from types import FrameType
from typing import Any, NoReturn

import click
import msgspec

from jobhub.client.archiving import archive
from jobhub.client.batch_cli import batch
from jobhub.client.events import Gap, JobEvent, LogEntry, OutputChunk
from jobhub.client.exits import (
    EXIT,
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_TIMEOUT,
    drop_stdout,
    explain,
    is_stdout_failure,
)
from jobhub.client.history_cli import history
from jobhub.client.options import (
    JOB_ID_ARGUMENT,
    OUTPUT_HELP,
    SECONDS,
    Remote,
    json_option,
    output_option,
    remote,
    timeout_option,
)
from jobhub.client.screen import Screen
from jobhub.client.sync import Client
from jobhub.core.exceptions import ApiError, ConfigError
from jobhub.core.settings import Settings
from jobhub.core.snapshot import Snapshot, Status

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8000"


class _Command(click.Group):
    """Turns the errors a user can meet into one line and an exit code, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.UsageError, click.exceptions.Exit, click.Abort):
            raise  # click's own: it prints them (usage first) and exits as it should
        except click.ClickException as exc:  # a refusal: as every other error, not "Error:"
            click.echo(f"jobhub: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            # Ctrl-C before a job is followed: not click's "Aborted!" and exit 1 (an error).
            click.echo("jobhub: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # What read stdout went away (`| head -1`): quiet, as if SIGPIPE had ended it.
            drop_stdout()
            sys.exit(EXIT_PIPE)
        except OSError as exc:
            if not is_stdout_failure(exc):
                raise
            # A full disk, a closed descriptor: the job goes on, its output stays in jobhub.
            drop_stdout()
            click.echo(f"jobhub: cannot write to stdout: {exc.strerror}", err=True)
            sys.exit(1)
        except Exception as exc:
            target = ctx.find_object(Remote)
            if target is None or target.debug:
                raise
            code, message = explain(exc, target.url, target.request_timeout, target.api_key)
            click.echo(f"jobhub: {message}", err=True)
            sys.exit(code)


def _epilog() -> str:
    lines = [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items()]
    return "\b\nExit codes:\n" + "\n".join(lines)


@click.group(cls=_Command, epilog=_epilog())
@click.option(
    "--url", envvar="JOBHUB_URL", default=DEFAULT_URL, show_default=True, metavar="URL",
    help="The jobhub web app (JOBHUB_URL).",
)  # fmt: skip
@click.option("--api-key", envvar="JOBHUB_API_KEY", help="API key (JOBHUB_API_KEY).")
@click.option(
    "--request-timeout", default=10.0, show_default=True, metavar="SECONDS", type=SECONDS,
    help="Longest wait for the app to answer one request.",
)  # fmt: skip
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(
    ctx: click.Context, url: str, api_key: str | None, request_timeout: float, debug: bool
) -> None:
    """jobhub: live progress for background jobs."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): say so before doing anything
        click.echo("jobhub: stdout is closed; give it somewhere to go (>/dev/null)", err=True)
        sys.exit(1)
    ctx.obj = Remote(url, api_key, request_timeout, debug)


@main.command()
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True,
              help="Address the web app binds (HOST).")  # fmt: skip
@click.option("--port", envvar="PORT", default=8000, show_default=True,
              type=click.IntRange(1, 65535), help="Port of the web app (PORT).")  # fmt: skip
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0),
              help="ARQ worker processes.")  # fmt: skip
@click.option("--web-processes", envvar="WEB_PROCESSES", default=1, show_default=True,
              type=click.IntRange(1),
              help="Web processes behind the one port (WEB_PROCESSES).")  # fmt: skip
@click.option(
    "--worker-settings", default="worker_settings.WorkerSettings", show_default=True,
    metavar="MODULE.NAME",
    help="The workers' ARQ settings, imported from the current directory.",
)  # fmt: skip
def dev(host: str, port: int, workers: int, web_processes: int, worker_settings: str) -> None:
    """Run the whole stack until Ctrl-C: Redis (private, unless REDIS_URL is set), ARQ
    workers and the web app. Exits 1 at once, saying why, if it cannot start."""
    # Imported here: the other subcommands are HTTP clients and need none of the stack.
    from jobhub.dev.archiving import DevArchiver
    from jobhub.dev.server import (
        RedisServer,
        Stack,
        check_port_free,
        check_worker_settings,
        describe_redis,
    )

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    with ExitStack() as resources:
        try:
            # A malformed variable fails before anything starts.
            settings = Settings.from_env()
            sentinels = settings.redis_sentinels
            check_port_free(host, port)
            if workers:
                check_worker_settings(worker_settings, os.getcwd())
            redis_url = os.environ.get("REDIS_URL") or ("redis://" if sentinels else "")
            private: RedisServer | None = None
            if not redis_url:
                private = resources.enter_context(RedisServer())
                redis_url = private.url
            click.echo(f"jobhub: {describe_redis(redis_url, settings, private)}")
            # Migrated before the web app starts, which would otherwise warn that the
            # archive is not ready and name the command this runs anyway.
            archiver = resources.enter_context(DevArchiver(settings, redis_url))
            stack = Stack(
                redis_url,
                host=host,
                port=port,
                workers=workers,
                worker_settings=worker_settings,
                web_processes=web_processes,
            )
            resources.enter_context(stack)
        except ConfigError as exc:
            click.echo(f"jobhub: {exc}", err=True)
            sys.exit(1)
        if archiver.url is not None:
            click.echo("jobhub: archiving ended jobs (JOBHUB_ARCHIVE_URL)")
        click.echo(f"jobhub: open {stack.base_url}/  (Ctrl-C stops everything)")
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping:
            exited = stack.exited() or (private.exited() if private is not None else None)
            exited = exited or archiver.exited()
            if exited:
                click.echo(f"jobhub: {exited}; stopping the rest", err=True)
                stack.stop()
                sys.exit(1)
            time.sleep(0.2)
        click.echo("jobhub: stopping")


@main.command()
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True,
              help="Address to bind (HOST).")  # fmt: skip
@click.option("--port", envvar="PORT", default=8000, show_default=True,
              type=click.IntRange(1, 65535), help="Port to listen on (PORT).")  # fmt: skip
@click.option("--web-processes", envvar="WEB_PROCESSES", default=1, show_default=True,
              type=click.IntRange(1),
              help="Processes behind the one port (WEB_PROCESSES).")  # fmt: skip
@click.option("--root-path", default="", metavar="PATH",
              help="The path prefix a proxy serves the app under, e.g. /jobhub.")  # fmt: skip
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE",
              help="A header to send with every response.")  # fmt: skip
def serve(
    host: str, port: int, web_processes: int, root_path: str, headers: tuple[str, ...]
) -> None:
    """Run the web app as production should: uvicorn with jobhub's request-head limit and a
    3 s graceful shutdown, until SIGTERM or Ctrl-C. Redis is REDIS_URL's; workers run apart."""
    from jobhub.dev.serve import serve as run_web  # the server, loaded by this command only

    pairs = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep:
            raise click.BadParameter(f"{header!r} is not NAME:VALUE", param_hint="--header")
        pairs.append((name.strip(), value.strip()))
    try:
        run_web(host, port, web_processes=web_processes, root_path=root_path, headers=pairs)
    except ConfigError as exc:
        click.echo(f"jobhub: {exc}", err=True)
        sys.exit(1)


@main.command()
def secret() -> None:
    """Print a fresh random secret, for JOBHUB_TOKEN_SECRET (or JOBHUB_API_KEYS)."""
    click.echo(secrets.token_urlsafe(32))


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
@click.option("--follow", is_flag=True, help="Show its progress until it ends, then its result.")
@click.option("--output", "show_output", is_flag=True, help=f"{OUTPUT_HELP} Implies --follow.")
@timeout_option
@json_option
@remote
def submit(
    target: Remote,
    function: str,
    args: tuple[str, ...],
    kwargs: tuple[str, ...],
    follow: bool,
    show_output: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Start FUNCTION as a job."""
    named = {}
    for item in kwargs:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--kwarg")
        if name in named:
            # The later one would win without a word, and the job run with half of what
            # was typed.
            raise click.BadParameter(f"{name!r} is given twice", param_hint="--kwarg")
        named[name] = _value(raw)
    with target.client() as hub:
        job = hub.submit(function, *map(_value, args), **named)
        if not (follow or show_output):
            _print(job, as_json)
            return
        _follow(hub, job, timeout, as_json, show_output)


@main.command(context_settings=JOB_ID_ARGUMENT)
@click.argument("job_id")
@json_option
@remote
def status(target: Remote, job_id: str, as_json: bool) -> None:
    """Print a job's snapshot; exits as the job did (0 while it is still at work)."""
    with target.client() as hub:
        snapshot = hub.get(job_id)
    _print(snapshot, as_json)
    sys.exit(EXIT.get(snapshot.status, 0))


@main.command(context_settings=JOB_ID_ARGUMENT)
@click.argument("job_id")
@output_option
@timeout_option
@json_option
@remote
def watch(
    target: Remote, job_id: str, show_output: bool, timeout: float | None, as_json: bool
) -> None:
    """Show a job's progress and log lines until it ends, then its result."""
    with target.client() as hub:
        # Read it first: an unknown job is an error line, before any progress bar is drawn.
        _follow(hub, hub.get(job_id), timeout, as_json, show_output)


@main.command(context_settings=JOB_ID_ARGUMENT)
@click.argument("job_id")
@json_option
@remote
def cancel(target: Remote, job_id: str, as_json: bool) -> None:
    """Cancel a job."""
    with target.client() as hub:
        _print(hub.cancel(job_id), as_json)


def _print(snapshot: Snapshot, as_json: bool, err: bool = False) -> None:
    if as_json:
        click.echo(msgspec.json.encode(snapshot).decode())
        return
    message = "" if snapshot.message == snapshot.status.value else snapshot.message
    line = f"{snapshot.job_id}  {snapshot.status.value}  {snapshot.percent:g}%  {message}"
    if snapshot.error is not None:
        line += f"  ({snapshot.error.type}: {snapshot.error.detail})"
    click.echo(line.rstrip(), err=err)
    if snapshot.status is Status.FINISHED and snapshot.result is not None:
        click.echo(f"result: {msgspec.json.encode(snapshot.result).decode()}", err=err)


def _follow(
    hub: Client, first: Snapshot, timeout: float | None, as_json: bool, output: bool
) -> NoReturn:
    job_id = first.job_id
    try:
        if as_json:
            last = first
            click.echo(msgspec.json.encode(first).decode())
            # Without --output a script gets snapshots only, one per line, as it always did
            # (and of a job that has ended, there is nothing more to read).
            if output or not first.is_terminal:
                with closing(hub.events(job_id, timeout=timeout, output=output)) as stream:
                    for event in _newer(first, stream):
                        click.echo(msgspec.json.encode(event).decode())
                        if isinstance(event, Snapshot):
                            last = event
        else:
            # Even a job that has ended is streamed: its log lines (a failed job's traceback
            # among them) and, with --output, its output are replayed.
            # Closed here, whatever stops it (`| head` too), while the client is still open.
            with (
                closing(hub.events(job_id, timeout=timeout, output=True)) as stream,
                Screen(first, output) as screen,
            ):
                last = screen.show(_newer(first, stream))
    except KeyboardInterrupt:
        click.echo(f"jobhub: stopped following; job {job_id} goes on", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if not last.is_terminal:
        click.echo(f"jobhub: job {job_id} did not end within {timeout} s", err=True)
        sys.exit(EXIT_TIMEOUT)
    if not as_json:
        # With --output, stdout carries the job's output alone: `> answer.txt` holds just it.
        _print(last, as_json=False, err=output)
    sys.exit(EXIT.get(last.status, 0))


def _newer(
    first: Snapshot, events: Iterator[JobEvent]
) -> Iterator[Snapshot | LogEntry | OutputChunk]:
    """The events after ``first``: every entry, and the snapshots newer than ``first`` (the
    stream starts with the current one again). Entries the job's capped output dropped
    before they were read are said on stderr, one line, where they were."""
    try:
        for event in events:
            if isinstance(event, Gap):
                click.echo(f"jobhub: missed {event.missed} entries (trimmed)", err=True)
            elif not isinstance(event, Snapshot) or event.seq > first.seq:
                yield event
    except ApiError as exc:
        # An ended job past Redis's TTL is read from the archive, which has no stream of
        # it to replay: ``first`` is all there is, and it is final.
        if not (first.is_terminal and exc.status_code == 404):
            raise


main.add_command(archive)
main.add_command(batch)
main.add_command(history)
