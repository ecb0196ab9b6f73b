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

import msgspec
from sse_starlette import ServerSentEvent

from jobhub.core.exceptions import JobNotFound
from jobhub.core.positions import Gap, entry_key
from jobhub.core.snapshot import decode_head

__all__ = [
    "HEARTBEAT",
    "BatchChange",
    "Change",
    "ChildChange",
    "Entry",
    "Frame",
    "gap_event",
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


class Change(Frame):
    """A snapshot as a tag's stream sends it: with its version in the tag's change log
    (jobhub/core/keys.py, ``TAG_CHANGES``), the event's id, from which a stream resumes."""

    __slots__ = ("version",)

    def __init__(self, data: bytes, version: int) -> None:
        super().__init__(data)
        self.version = version

    @classmethod
    def published(cls, message: bytes) -> Change:
        """From what the write scripts publish on a tag's channel: ``<version> <JSON>``, or
        on a batch's: ``B<seq> <JSON>`` (the batch's snapshot), ``J<seq> <JSON>`` (a
        child's, the change that made the batch's ``seq``)."""
        version, _, data = message.partition(b" ")
        if version.startswith(b"B"):
            return BatchChange(data, int(version[1:]))
        if version.startswith(b"J"):
            return ChildChange(data, int(version[1:]))
        return cls(data, int(version))

    @property
    def tagged_event(self) -> bytes:
        return self.with_id(str(self.version))


class ChildChange(Change):
    """A batch child's snapshot on the batch's stream: an event named ``job``. Its id is a
    position in the batch's stream, ``2 * seq - 1`` (``seq``: the batch's, at this change),
    just before the batch's own snapshot of that ``seq`` (``2 * seq``), so that a stream cut
    between the two resumes with neither repeated nor lost."""

    __slots__ = ()

    def __init__(self, data: bytes, seq: int) -> None:
        super().__init__(data, 2 * seq - 1)

    @property
    def tagged_event(self) -> bytes:
        return b"id: %d" % self.version + _SEP + b"event: job" + _SEP + self._data_lines


class _BatchHead(msgspec.Struct):
    status: str


class BatchChange(Change):
    """A batch's snapshot on its stream, unnamed, under id ``2 * seq``. It stands in a
    watch as the job ``""`` (no job has that id), so that a slow reader gets the newest
    one and never an older one after it."""

    __slots__ = ()

    def __init__(self, data: bytes, seq: int) -> None:  # noqa: super() would decode a job
        self.job_id = ""
        self.seq = seq
        self.version = 2 * seq
        self.terminal = msgspec.json.decode(data, type=_BatchHead).status != "active"
        self.event = ServerSentEvent(data=data.decode(), id=str(self.version)).encode()
        self._data_lines = self.event[self.event.index(_SEP) + len(_SEP) :]


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


def gap_event(gap: Gap, event_id: str) -> bytes:
    """The SSE event named ``gap``; its id is the reader's place past the hole."""
    return (
        b"id: "
        + event_id.encode()
        + _SEP
        + b"event: gap"
        + _SEP
        + b"data: "
        + msgspec.json.encode(gap)
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
