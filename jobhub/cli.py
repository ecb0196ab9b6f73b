"""The ``jobhub`` command.

jobhub dev            Redis (private, if REDIS_URL is unset), a worker and the web app
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from types import FrameType

import click

from .devserver import RedisServer, Stack
from .exceptions import ConfigError
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
