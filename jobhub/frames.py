"""The SSE wire format of jobhub's streams: each published snapshot encoded once.

A ``Frame`` is one stored-and-published snapshot, decoded just enough to route it (job, seq,
terminal) and encoded as an SSE event once, however many streams send it. The other few
things a stream sends are built here too, so that the format lives in one place.

The fields, as the HTML standard's EventSource reads them
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
``id`` becomes ``lastEventId``, sent back as ``Last-Event-ID`` on a reconnect; ``retry`` is
the reconnection delay in milliseconds; ``event`` names the event (``onmessage`` receives
only unnamed ones); a line that starts with ``:`` is a comment, which the browser ignores.

    frame = Frame(data)                 # data: a snapshot's JSON, as stored and published
    first = retry_field(2500) + frame.event
"""

from __future__ import annotations

import re

import msgspec
from sse_starlette import ServerSentEvent

from .exceptions import JobNotFound
from .snapshot import decode_head

__all__ = [
    "HEARTBEAT",
    "LAST_ENTRY",
    "Entry",
    "Frame",
    "Gap",
    "entry_key",
    "is_entry_id",
    "job_gone",
    "retry_field",
]

_SEP = ServerSentEvent.DEFAULT_SEPARATOR.encode()

HEARTBEAT = ServerSentEvent(comment="heartbeat").encode()
"""An SSE comment: ignored by EventSource, but keeps proxies from closing an idle stream."""


class Frame:
    """One published snapshot, encoded as an SSE event once for all of its viewers."""

    __slots__ = ("_data_lines", "event", "job_id", "seq", "terminal")

    def __init__(self, data: bytes) -> None:
        head = decode_head(data)
        self.job_id = head.job_id
        self.seq = head.seq
        self.terminal = head.is_terminal
        # No event name: the browser's EventSource.onmessage receives unnamed events only.
        self.event = ServerSentEvent(data=data.decode(), id=str(head.seq)).encode()
        # What follows the id line: the data line(s) and the blank line that ends the event.
        self._data_lines = self.event[self.event.index(_SEP) + len(_SEP) :]

    def with_id(self, event_id: str) -> bytes:
        """The same event under another id (a many-job stream's cursor), without encoding
        the snapshot again."""
        return b"id: " + event_id.encode() + _SEP + self._data_lines


_ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")


LAST_ENTRY = (2**64 - 1, 2**64 - 1)
"""The greatest id a Redis stream can hold, as ``entry_key`` gives it: each part is an
unsigned 64-bit number."""


def is_entry_id(text: str) -> bool:
    """Whether ``text`` is a Redis stream id, ``<ms>-<n>`` in ASCII digits that Redis takes
    (each part below 2**64: a larger one is an error from Redis, not an empty read)."""
    if _ENTRY_ID.fullmatch(text) is None:
        return False
    ms, _, seq = text.partition("-")
    return int(ms) < 2**64 and int(seq) < 2**64


def entry_key(entry_id: str) -> tuple[int, int]:
    """A Redis stream id (``1700000000000-3``) as a pair that orders as the stream does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Entry:
    """One entry of a job's output (a log line or a chunk), encoded once for all streams:
    an SSE event named for its kind, ``log`` or ``output``, whose id each stream gives it
    (its position in the job's snapshots and output, ``<seq>:<entry id>``)."""

    __slots__ = ("_lines", "id", "job_id", "key")

    def __init__(self, job_id: str, entry_id: str, data: bytes) -> None:
        self.job_id = job_id
        self.id = entry_id
        self.key = entry_key(entry_id)
        # The JSON is compact and one line (JSON escapes newlines inside strings).
        kind = b"output" if data.startswith(b'{"kind":"output"') else b"log"
        self._lines = b"event: " + kind + _SEP + b"data: " + data + _SEP + _SEP

    @classmethod
    def published(cls, job_id: str, message: bytes) -> Entry:
        """From what the write script publishes: ``><stream id> <JSON>``."""
        entry_id, _, data = message[1:].partition(b" ")
        return cls(job_id, entry_id.decode(), data)

    def event(self, event_id: str) -> bytes:
        return b"id: " + event_id.encode() + _SEP + self._lines


class Gap(msgspec.Struct, frozen=True):
    """Entries of a job's output that a reader never got: trimmed from the capped stream
    (``JOBHUB_OUTPUT_LIMIT``) before it read them. ``missed`` is exact; ``from``/``to`` carry
    the ordinals of the first and last missed entry (the part after ``-``; see
    jobhub/scripts.py), and ``to`` is a place to read on from: nothing kept lies before it."""

    missed: int
    first: str = msgspec.field(name="from")
    last: str = msgspec.field(name="to")

    @classmethod
    def between(cls, after: str, first_kept: str) -> Gap | None:
        """The gap between a reader's place ``after`` (an entry id, ``"0"`` for none) and
        the first entry the stream still holds after it; None where nothing is missing.

        Each id carries its entry's ordinal, and ids increase with it, so
        ``<ms of first kept>-<its n - 1>`` follows every missed entry and precedes every
        kept one, whatever the missed entries' own times were.
        """
        held_ms, held_n = (0, 0) if after in ("", "0") else entry_key(after)
        kept_ms, kept_n = entry_key(first_kept)
        missed = kept_n - held_n - 1
        if missed <= 0:
            return None
        return cls(missed, f"{held_ms}-{held_n + 1}", f"{kept_ms}-{kept_n - 1}")

    @property
    def json(self) -> bytes:
        return msgspec.json.encode(self)

    def event(self, event_id: str) -> bytes:
        """The SSE event named ``gap``; its id is the reader's place past the hole."""
        return (
            b"id: "
            + event_id.encode()
            + _SEP
            + b"event: gap"
            + _SEP
            + b"data: "
            + self.json
            + _SEP
            + _SEP
        )


def retry_field(milliseconds: int) -> bytes:
    """A ``retry`` line, to put in front of an event's own lines.

    It rides on an event rather than alone: a block of nothing but ``retry`` is an event
    with empty data to some clients (httpx-sse yields one), which a browser would not see.
    """
    return b"retry: %d" % milliseconds + _SEP


def job_gone(job_id: str) -> bytes:
    """The event that ends a stream whose job no longer exists (Redis lost its data).

    Named ``error``, with the body an HTTP error of the API has: EventSource dispatches it
    to ``onerror`` handlers, which is where a page already gives a stream up, and a client
    that reconnects meets the same error as a 404.
    """
    body = JobNotFound(job_id).to_body()
    body["error"]["job_id"] = job_id
    return ServerSentEvent(data=msgspec.json.encode(body).decode(), event="error").encode()
