"""What ``events()`` yields, and where a follower of a job's events stands.

A job's events are its snapshots and, with ``output=True``, its log lines (``LogEntry``),
chunks of output (``OutputChunk``) and the ``Gap`` told in place of entries the output's
cap dropped before they were read. They come from the SSE stream (``parse_event``) or from
polling (``PAGE``), and ``Place`` is what makes a switch between the two repeat nothing
and lose nothing.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec
from httpx_sse import ServerSentEvent

from jobhub.core.positions import Gap, entry_key, is_entry_id
from jobhub.core.snapshot import Snapshot, decode

__all__ = [
    "OUTPUT_PAGE",
    "PAGE",
    "Gap",
    "JobEvent",
    "LogEntry",
    "OutputChunk",
    "Place",
    "PolledOutput",
    "parse_event",
]


class LogEntry(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="log"):
    """A line the job logged (``await job.log(message, level)``). A failed job's traceback
    arrives as one, with level ``error``."""

    id: str
    """Its place in the job's output, a Redis stream id (``1700000000000-3``)."""
    level: str
    """``debug``, ``info``, ``warning`` or ``error``."""
    message: str
    at: str
    """When the job wrote it (ISO 8601, UTC)."""


class OutputChunk(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="output"):
    """A chunk of the job's partial result (``await job.output(data)``), as the job gave it."""

    id: str
    """Its place in the job's output, a Redis stream id (``1700000000000-3``)."""
    data: Any = None
    """Any JSON value: a token of text, a row, an object."""
    at: str
    """When the job wrote it (ISO 8601, UTC)."""


JobEvent: TypeAlias = Snapshot | LogEntry | OutputChunk | Gap
"""What ``events(job_id, output=True)`` yields."""

_ENTRY: msgspec.json.Decoder[LogEntry | OutputChunk] = msgspec.json.Decoder(LogEntry | OutputChunk)
_GAP = msgspec.json.Decoder(Gap)


OUTPUT_PAGE = 1000
"""Entries asked for per ``GET /jobs/{id}/output`` while polling: the most the API gives."""


class PolledOutput(msgspec.Struct):
    """An answer of ``GET /jobs/{id}/output``."""

    entries: list[LogEntry | OutputChunk]
    next: str
    gap: Gap | None = None


PAGE = msgspec.json.Decoder(PolledOutput)


class Place:
    """What ``events()`` has yielded of a job: the newest snapshot and the last entry of the
    job's output. It is the stream's position (``<seq>:<entry id>``, sent back as
    ``Last-Event-ID``) and the polls' cursor, so no switch between them repeats or loses
    anything."""

    __slots__ = ("done", "entry", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.entry: str | None = None
        self.done = False

    def event_id(self) -> str:
        return f"{self.seq}:{self.entry}" if self.entry else str(self.seq)

    def take(self, event: JobEvent) -> bool:
        """Whether ``event`` is new here; if so, the place moves past it."""
        if isinstance(event, Snapshot):
            if event.seq <= self.seq:
                return False
            self.seq = event.seq
            self.done = event.is_terminal
            return True
        entry_id = event.last if isinstance(event, Gap) else event.id
        if self.entry is not None and entry_key(entry_id) <= entry_key(self.entry):
            return False
        self.entry = entry_id
        return True


def parse_event(sse: ServerSentEvent) -> JobEvent | None:
    """A snapshot, a log line or a chunk from the stream; None for anything else."""
    if sse.event == "message" and sse.data:
        return decode(sse.data)
    if sse.event in ("log", "output"):
        # The event's id is the position after it, <seq>:<entry id>; the data leaves the
        # entry's id out, so it goes in front, as GET /jobs/{id}/output has it.
        entry_id = sse.id.partition(":")[2]
        if is_entry_id(entry_id) and sse.data.startswith("{"):
            return _ENTRY.decode(f'{{"id":"{entry_id}",{sse.data[1:]}')
    if sse.event == "gap":
        return _GAP.decode(sse.data)
    return None
