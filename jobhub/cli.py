"""The ``jobhub`` command.

jobhub dev            Redis (private, if REDIS_URL is unset), a worker and the web app
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import ExitStack
from types import FrameType

import click

from .devserver import RedisServer
from .exceptions import ConfigError
from .processes import spawn, stop, web_argv, worker_argv
from .settings import Settings

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
    env = dict(os.environ)
    with ExitStack() as stack:
        if not env.get("REDIS_URL"):
            try:
                redis = stack.enter_context(RedisServer())
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
            env["REDIS_URL"] = redis.url
            click.echo(f"jobhub: started a private redis-server at {redis.url}")
        try:
            Settings.from_env(env)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

        procs: list[subprocess.Popen[bytes]] = []
        stack.callback(stop, procs)
        procs += [spawn(worker_argv(), env=env) for _ in range(workers)]
        procs.append(spawn(web_argv(host, port), env=env))
        click.echo(f"jobhub: open http://{host}:{port}/  (Ctrl-C stops everything)")

        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping:
            if any(p.poll() is not None for p in procs):
                click.echo("jobhub: a process of the stack exited; stopping the rest", err=True)
                break
            time.sleep(0.2)
        click.echo("jobhub: stopping")
