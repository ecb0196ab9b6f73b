"""``jobhub history``: ended jobs from the archive, newest first.

    jobhub history --function reports.build --status failed --since 7d
    jobhub history --tag user:42 --limit 200 --json      # one JSON object a line

It pages through ``GET /archive/jobs`` until ``--limit`` jobs are printed (or none is
left). ``--url`` and ``--api-key`` are the ``jobhub`` group's (or ``JOBHUB_URL``,
``JOBHUB_API_KEY``); a failure is one line and an exit code, as for every command.
"""

from __future__ import annotations

from typing import Any

import click
import msgspec

from jobhub.client.history import ArchivedJob

__all__ = ["history"]

PAGE = 200
"""The most a page of the archive holds (``GET /archive/jobs``'s ``limit``)."""


def _override(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # As the other commands take them, after the subcommand too.
    if value is not None and param.name is not None:
        setattr(ctx.obj, param.name, value)


@click.command()
@click.option("--function", help="Only this function's jobs.")
@click.option("--status", type=click.Choice(["finished", "failed", "canceled"]))
@click.option("--since", metavar="WHEN", help="Ended since: 2026-12-01T08:00Z, or 90m, 7d ago.")
@click.option("--until", metavar="WHEN", help="Ended before (same forms as --since).")
@click.option("--tag", help="Only jobs with this tag.")
@click.option("--error", metavar="TEXT", help="Only jobs whose error holds TEXT (any case).")
@click.option(
    "--arg", "args", multiple=True, metavar="PATH=VALUE",
    help="Only jobs whose argument at PATH is VALUE (JSON or text): user=42, options.format=csv.",
)  # fmt: skip
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, for scripts.")
@click.option("--url", callback=_override, expose_value=False, metavar="URL",
              help="The jobhub web app (as `jobhub --url`; JOBHUB_URL).")  # fmt: skip
@click.option("--api-key", callback=_override, expose_value=False,
              help="API key (JOBHUB_API_KEY).")  # fmt: skip
@click.pass_obj
def history(
    target: Any,
    function: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    tag: str | None,
    error: str | None,
    args: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List ended jobs from the archive, newest first."""
    paths: dict[str, Any] = {}
    for item in args:
        path, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not PATH=VALUE", param_hint="--arg")
        paths[path] = _value(raw)
    filters: dict[str, Any] = {"function": function, "status": status, "since": since}
    filters["until"] = until
    filters |= {"tag": tag, "error": error, "args": paths}
    left, cursor = limit, None
    with target.client() as hub:
        while left > 0:
            page = hub.history(limit=min(left, PAGE), cursor=cursor, **filters)
            for job in page.jobs:
                click.echo(msgspec.json.encode(job).decode() if as_json else _line(job))
            left -= len(page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                break


def _value(raw: str) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return raw


def _line(job: ArchivedJob) -> str:
    took = "" if job.run_seconds is None else f"{job.run_seconds:.2f}s"
    line = f"{job.ended_at}  {job.job_id}  {job.function}  {job.status}  {took}"
    if job.error is not None:
        line += f"  ({job.error.get('type')}: {job.error.get('detail')})"
    return line.rstrip()
