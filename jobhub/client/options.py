"""What every `jobhub` command that talks to the app shares: the target it talks to
(``Remote``, the group's ``--url``/``--api-key``, overridable after a subcommand) and the
options its subcommands take. Kept apart from ``cli`` so that each command group
(``batch_cli``, ``history_cli``) builds on them without importing the group it joins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from jobhub.client.sync import Client

__all__ = [
    "JOB_ID_ARGUMENT",
    "OUTPUT_HELP",
    "SECONDS",
    "Remote",
    "json_option",
    "key_option",
    "output_option",
    "pass_target",
    "remote",
    "timeout_option",
    "url_option",
]

# Job ids may start with "-" ([A-Za-z0-9_-]): taken for unknown options, click would refuse
# `jobhub status -x1`. The commands that take one have no short options to confuse it with.
JOB_ID_ARGUMENT = {"ignore_unknown_options": True}


class _Seconds(click.FloatRange):
    """A time limit: a finite number of seconds above 0. (A range alone lets NaN through,
    as no comparison with it is true.)"""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return seconds


SECONDS = _Seconds()


@dataclass
class Remote:
    """The app the command talks to: the group's options, overridden by a subcommand's."""

    url: str
    api_key: str | None
    request_timeout: float
    debug: bool

    def client(self) -> Client:
        return Client(self.url, api_key=self.api_key, timeout=self.request_timeout)


def _override(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and param.name is not None:
        setattr(ctx.find_object(Remote), param.name, value)


# After the subcommand too (`jobhub status ID --url ...`), as a user types it.
url_option = click.option(
    "--url", callback=_override, expose_value=False, metavar="URL",
    help="The jobhub web app (as `jobhub --url`; JOBHUB_URL).",
)  # fmt: skip
key_option = click.option(
    "--api-key", callback=_override, expose_value=False, help="API key (JOBHUB_API_KEY)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
timeout_option = click.option("--timeout", type=SECONDS, help="Stop waiting after this many s.")
OUTPUT_HELP = (
    "Write the job's output to stdout as it comes: text as it is, other values as JSON "
    "lines (with --json: every event, one JSON line each)."
)
output_option = click.option("--output", "show_output", is_flag=True, help=OUTPUT_HELP)
pass_target = click.make_pass_decorator(Remote)


def remote(command: Callable[..., Any]) -> Callable[..., Any]:
    """What every command that calls the app takes: ``--url`` and ``--api-key`` (after the
    subcommand too), and the ``Remote`` they set, passed as its first argument."""
    return url_option(key_option(pass_target(command)))
