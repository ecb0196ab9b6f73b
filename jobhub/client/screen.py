"""What following a job looks like in a terminal (``jobhub watch``, ``submit --follow``):
its progress bar, its log lines printed above the bar, and with ``--output`` its output.

rich is imported only once a screen is made: ``--json`` scripts and the client never load it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from jobhub.client.events import LogEntry, OutputChunk
from jobhub.core.snapshot import Snapshot, Status

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live
    from rich.progress import Progress, TaskID

__all__ = ["LEVEL_STYLES", "Screen"]

LEVEL_STYLES = {"debug": "dim", "info": "cyan", "warning": "yellow", "error": "bold red"}


class Screen:
    """What following a job shows in a terminal: its bar on stderr, its log lines printed
    above the bar, and (with --output) its output on stdout, chunk by chunk.

    When stdout and stderr are the same terminal, text written to stdout would land on the
    bar's line and be wiped by its next redraw; there the text is typed in the live area
    instead, the row being typed just above the bar and each full row printed above both.
    """

    def __init__(self, first: Snapshot, output: bool) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.output = output
        self.typed = output and sys.stdout.isatty() and sys.stderr.isatty()
        self.console: Console = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
        # Drawn by the Live below, with the row being typed, not by a Live of its own.
        self.progress: Progress = Progress(*columns, console=self.console)
        self.task: TaskID = self.progress.add_task(first.job_id, total=100)
        self.first = first
        self.row = ""  # the row of output being typed (typed mode)
        self.mid_line = False  # stdout's last character was not a newline
        # Left as it is, rich would take over sys.stdout and send its writes to stderr.
        self.live: Live = Live(
            self, console=self.console, redirect_stdout=not output, refresh_per_second=10
        )
        self.snapshot(first)

    def __enter__(self) -> Screen:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()
        if not self.console.is_terminal:
            # rich ends the bar's last line only on a terminal: in a pipe or a CI log the
            # next message (the summary, a timeout) would be glued to its "100%".
            self.console.line()
        if self.mid_line and not self.typed:
            sys.stdout.write("\n")  # the shell's prompt goes on a line of its own
            sys.stdout.flush()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        if self.row:
            yield Text(self.row)
        yield self.progress.get_renderable()

    def show(self, events: Iterator[Snapshot | LogEntry | OutputChunk]) -> Snapshot:
        """Shows each event as it comes; returns the last snapshot."""
        last = self.first
        for event in events:
            if isinstance(event, Snapshot):
                self.snapshot(event)
                last = event
            elif isinstance(event, LogEntry):
                self.log(event)
            elif self.output:
                self.chunk(event.data)
        return last

    def snapshot(self, snapshot: Snapshot) -> None:
        label = snapshot.status.value
        if snapshot.message and snapshot.message != label:
            label += f": {snapshot.message}"
        percent = 100.0 if snapshot.status is Status.FINISHED else snapshot.percent
        self.progress.update(self.task, completed=percent, description=label)

    def log(self, entry: LogEntry) -> None:
        from rich.text import Text

        style = LEVEL_STYLES.get(entry.level, "")
        # A Text, not a str: a message's own brackets are not rich markup.
        self.console.print(Text.assemble((f"{entry.level}:", style), " ", entry.message))

    def chunk(self, data: Any) -> None:
        if isinstance(data, str):
            text = data
        else:
            text = ("\n" if self.mid_line else "") + msgspec.json.encode(data).decode() + "\n"
        if not text:
            return
        self.mid_line = not text.endswith("\n")
        if self.typed:
            self._type(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    def _type(self, text: str) -> None:
        from rich.text import Text

        *lines, rest = (self.row + text).split("\n")
        for line in lines:
            self.console.print(Text(line))
        # Greedy wrapping moves only the last row as text is added: the rows before it
        # are final, and go above the live area where the terminal keeps them.
        rows = Text(rest).wrap(self.console, self.console.width)
        for row in rows[:-1]:
            self.console.print(row)
        self.row = rows[-1].plain if rest else ""
