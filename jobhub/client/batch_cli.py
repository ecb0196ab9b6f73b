"""``jobhub batch``: many jobs as one, from the command line.

    jobhub batch submit jobs.jsonl [--follow]   one job per line: {"function", "kwargs", ...}
    jobhub batch status ID      jobhub batch watch ID      jobhub batch cancel ID|retry ID

Following a batch draws one bar on stderr (its weighted percent, with the counts by status)
and ends with a summary line, and a line for each failed child; the exit code says how it
ended (``EXIT_CODES``: 0 finished, 3 a child failed, 4 canceled). In a pipe, the bar is
drawn once, at the end.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any, NoReturn

import click
import msgspec

from jobhub.client.exits import EXIT_CANCELED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TIMEOUT
from jobhub.client.options import (
    JOB_ID_ARGUMENT,
    Remote,
    json_option,
    remote,
    timeout_option,
)
from jobhub.client.sync import Client
from jobhub.core.batch import MAX_BATCH_JOBS, BatchSnapshot, BatchStatus

__all__ = ["batch", "summary"]

EXIT_OF = {BatchStatus.FINISHED: 0, BatchStatus.FAILED: EXIT_FAILED,
           BatchStatus.CANCELED: EXIT_CANCELED}  # fmt: skip
"""The exit status of each way a batch ends (as a job's: ``exits.EXIT``)."""

FAILED_SHOWN = 10
"""Failed children a summary names (the rest are a ``GET /batches/{id}/jobs`` away)."""


@click.group()
def batch() -> None:
    """Many jobs submitted, watched, canceled and retried as one."""


def summary(snapshot: BatchSnapshot) -> str:
    """One line: ``<id>  <status>  <percent>%  <n> jobs: <count> <status>, ...``."""
    counts = msgspec.structs.asdict(snapshot.counts)
    shown = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return (
        f"{snapshot.batch_id}  {snapshot.status.value}  {snapshot.percent:g}%  "
        f"{snapshot.total} jobs: {shown or 'none yet'}"
    )


def _jobs(source: IO[str]) -> list[dict[str, Any]]:
    jobs = []
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            raise click.BadParameter(f"line {number} is not JSON: {exc}") from None
        if not isinstance(job, dict):
            raise click.BadParameter(f"line {number} is not a JSON object")
        jobs.append(job)
    if len(jobs) > MAX_BATCH_JOBS:
        raise click.BadParameter(f"{len(jobs):,} jobs: at most {MAX_BATCH_JOBS:,} per batch")
    return jobs


@batch.command()
@click.argument("file", type=click.File("r"))
@click.option("--follow", is_flag=True, help="Show its progress until it ends, then a summary.")
@click.option("--batch-id", help="The batch's id (an idempotency key); random if not given.")
@timeout_option
@json_option
@remote
def submit(
    target: Remote,
    file: IO[str],
    follow: bool,
    batch_id: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Start a batch of the jobs in FILE (JSON lines; `-` for stdin)."""
    jobs = _jobs(file)
    with target.client() as hub:
        submitted = hub.submit_batch(jobs, batch_id=batch_id)
        if not follow:
            if as_json:
                click.echo(msgspec.json.encode(submitted).decode())
            else:
                click.echo(summary(submitted.batch))
            return
        _follow(hub, submitted.batch, timeout, as_json)


@batch.command(context_settings=JOB_ID_ARGUMENT)
@click.argument("batch_id")
@json_option
@remote
def status(target: Remote, batch_id: str, as_json: bool) -> None:
    """Print a batch's snapshot; exits as the batch ended (0 while it is active)."""
    with target.client() as hub:
        snapshot = hub.batch(batch_id)
    click.echo(msgspec.json.encode(snapshot).decode() if as_json else summary(snapshot))
    sys.exit(EXIT_OF.get(snapshot.status, 0))


@batch.command(context_settings=JOB_ID_ARGUMENT)
@click.argument("batch_id")
@timeout_option
@json_option
@remote
def watch(target: Remote, batch_id: str, timeout: float | None, as_json: bool) -> None:
    """Show a batch's progress until it ends, then a summary."""
    with target.client() as hub:
        _follow(hub, hub.batch(batch_id), timeout, as_json)


@batch.command(context_settings=JOB_ID_ARGUMENT)
@click.argument("batch_id")
@json_option
@remote
def cancel(target: Remote, batch_id: str, as_json: bool) -> None:
    """Cancel every job of a batch not ended yet."""
    with target.client() as hub:
        snapshot = hub.cancel_batch(batch_id)
    click.echo(msgspec.json.encode(snapshot).decode() if as_json else summary(snapshot))


@batch.command(context_settings=JOB_ID_ARGUMENT)
@click.argument("batch_id")
@json_option
@remote
def retry(target: Remote, batch_id: str, as_json: bool) -> None:
    """Run a batch's failed and canceled jobs again, each as a new job in its place."""
    with target.client() as hub:
        new = hub.retry_batch(batch_id)
        snapshot = hub.batch(batch_id)
    if as_json:
        click.echo(msgspec.json.encode({"job_ids": new, "batch": snapshot}).decode())
        return
    click.echo(f"{len(new)} job{'' if len(new) == 1 else 's'} retried")
    click.echo(summary(snapshot))


def _follow(hub: Client, first: BatchSnapshot, timeout: float | None, as_json: bool) -> NoReturn:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    last = first
    try:
        if as_json:
            click.echo(msgspec.json.encode(first).decode())
            if not first.is_terminal:
                last = hub.wait_batch(first.batch_id, timeout=timeout, on_update=_echo_json)
        else:
            console = Console(stderr=True)
            columns = (BarColumn(), TaskProgressColumn(), TextColumn("{task.description}"))
            with Progress(*columns, console=console) as bar:
                task = bar.add_task(_counts(first), total=100, completed=int(first.percent))

                def draw(snapshot: BatchSnapshot) -> None:
                    bar.update(task, completed=snapshot.percent, description=_counts(snapshot))

                if not first.is_terminal:
                    last = hub.wait_batch(first.batch_id, timeout=timeout, on_update=draw)
            if not console.is_terminal:
                console.line()  # rich ends the bar's line only on a terminal
    except KeyboardInterrupt:
        click.echo(f"jobhub: stopped following; batch {first.batch_id} goes on", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except TimeoutError:
        click.echo(f"jobhub: batch {first.batch_id} did not end within {timeout} s", err=True)
        sys.exit(EXIT_TIMEOUT)
    if not as_json:
        click.echo(summary(last))
        if last.counts.failed:
            for child in hub.batch_jobs(last.batch_id, status="failed")[:FAILED_SHOWN]:
                why = f"{child.error.type}: {child.error.detail}" if child.error else "failed"
                click.echo(f"  failed {child.job_id} {child.function}: {why}")
    sys.exit(EXIT_OF.get(last.status, 0))


def _echo_json(snapshot: BatchSnapshot) -> None:
    click.echo(msgspec.json.encode(snapshot).decode())


def _counts(snapshot: BatchSnapshot) -> str:
    counts = snapshot.counts
    waiting = counts.queued
    working = counts.started + counts.running + counts.paused
    return (
        f"{counts.finished} finished · {counts.failed} failed · {counts.canceled} canceled · "
        f"{working} running · {waiting} queued"
    )
