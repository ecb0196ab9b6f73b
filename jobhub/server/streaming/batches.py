"""``GET /batches/{id}/events``: a batch and its children, live, on one stream.

The batch's snapshots are unnamed events; each child's snapshot is an event named ``job``.
Every change of a child grows the batch's ``seq`` in the step that writes the child, and is
published on the batch's channel twice: the child's snapshot, then the batch's
(jobhub/store/lua/batches.py). An event's id is a position: ``2 * seq - 1`` for the child
that made the batch's ``seq``, ``2 * seq`` for the batch's snapshot at it.

A new stream subscribes first, then reads (in one step) the batch's snapshot and those of its
children changed last (``BATCH_STREAM_JOBS``), and goes live. ``Last-Event-ID`` resumes from
a position: the stream sends the current snapshot of each child changed after it, once,
whatever the number of its changes, and the batch's if it is newer than the client's: so
nothing is lost or repeated, and the batch never goes backwards. A slow reader gets the
newest snapshot of each child that changed, and the batch's newest, not a queue of steps
(the watch keeps one per job: ``TagWatch``). The stream ends after the batch's final
snapshot; a client resuming past it is answered 204, which stops EventSource. A batch that
is gone when the stream re-reads it (Redis came back without its data) ends the stream with
an ``error`` event, the body of the API's 404, as a job's stream ends (``frames.job_gone``):
waiting for news of a batch that no longer exists would hold the stream open for ever.

``?jobs=false`` leaves the children's events out: a page that draws only the batch's bar
is sent the batch's snapshots alone, at a fraction of the cost (bench/batch.py).
"""

from __future__ import annotations

import random
import sys
from collections.abc import AsyncIterator

import msgspec
from sse_starlette import ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from jobhub.core import keys
from jobhub.core.exceptions import BatchNotFound
from jobhub.core.parsing import ascii_int
from jobhub.server.scopes import Grant
from jobhub.server.services import services_of
from jobhub.server.streaming.frames import (
    HEARTBEAT,
    BatchChange,
    Change,
    ChildChange,
    Entry,
    Frame,
    retry_field,
)
from jobhub.server.streaming.sse import EventStream
from jobhub.server.streaming.watch import TagWatch, Vanished, Watch
from jobhub.store.batches import BatchStore

__all__ = ["BATCH_STREAM_JOBS", "BarWatch", "batch_stream"]

BATCH_STREAM_JOBS = 200
"""How many of a batch's children a new stream starts with (those changed last); the rest
are a page away (``GET /batches/{id}/jobs``)."""

_EVERY_CHANGE = 1_000_000  # a resume reads every child changed since: none is to be missed


class _Head(msgspec.Struct):
    status: str
    seq: int


class _BatchGone(BatchChange):
    """The end of a stream whose batch is gone: an ``error`` event with the API's 404 body
    and no id, so that a client reconnecting from its last place meets the same 404. It
    stands as the batch at a ``seq`` no snapshot reaches, so no watch drops it; its version
    (0) leaves the hub's place in the batch's changes where it was."""

    __slots__ = ()

    def __init__(self, batch_id: str) -> None:  # not super's: there is no snapshot to decode
        self.job_id = ""
        self.seq = sys.maxsize
        self.version = 0
        self.terminal = True
        body = msgspec.json.encode(BatchNotFound(batch_id).to_body()).decode()
        self.event = ServerSentEvent(data=body, event="error").encode()

    @property
    def tagged_event(self) -> bytes:
        return self.event


class BarWatch(TagWatch):
    """A watch of a batch's snapshots alone (``?jobs=false``): its children's are dropped
    as they are offered, so that none is held or sent."""

    __slots__ = ()

    def offer(self, update: Frame | Vanished | Entry) -> None:
        if isinstance(update, BatchChange):
            super().offer(update)


async def batch_stream(
    request: Request,
    batch_id: str,
    retry_ms: tuple[int, int],
    *,
    jobs: bool = True,
    grant: Grant | None = None,
) -> Response:
    """The stream of ``batch_id`` (already validated, its access checked); with ``jobs``
    false, of the batch's snapshots alone; ``grant``: the scoped token's it was opened
    with, with which it ends."""
    services = services_of(request)
    store = services.batches.store
    # Anything but a position is no cursor, never an error: the stream starts over.
    after = ascii_int(request.headers.get("last-event-id", "").strip())
    first: list[_Head | None] = []

    async def read(position: int | None) -> list[Change]:
        # Only a stream's first read is its own. The hub re-reads a channel after a
        # reconnect with the read of the stream that opened it, for every stream of the
        # batch: the children too, then, whatever the first one wanted (a bar's watch
        # drops them), or a stream of every child opened later would miss their changes.
        changes, head = await _changes(store, batch_id, position, jobs or bool(first))
        if not first:
            first.append(head)
        elif head is None:
            # A re-read after the hub's reconnect: the batch the stream had is gone.
            return [_BatchGone(batch_id)]
        return changes

    kind = TagWatch if jobs else BarWatch
    channel = keys.batch_channel(batch_id)
    watch = await services.hub.watch_tag("", after, read, on=channel, kind=kind)
    head = first[0] if first else None
    if head is None:
        watch.close()
        raise BatchNotFound(batch_id)
    if head.status != "active" and after is not None and 2 * head.seq <= after:
        watch.close()  # the client has the batch's end: 204 stops EventSource reconnecting
        return Response(status_code=204)
    chunks = services.gate.held(_stream(watch, random.randint(*retry_ms)), grant)
    return EventStream(chunks, watch, services.streams)


async def _changes(
    store: BatchStore, batch_id: str, position: int | None, jobs: bool
) -> tuple[list[Change], _Head | None]:
    after = None if position is None else (position + 1) // 2
    limit = (BATCH_STREAM_JOBS if after is None else _EVERY_CHANGE) if jobs else 0
    data, found = await store.changes(batch_id, after=after, limit=limit)
    if data is None:
        return [], None
    changes: list[Change] = [ChildChange(child, seq) for seq, child in found]
    head = msgspec.json.decode(data, type=_Head)
    if position is None or 2 * head.seq > position:
        changes.append(BatchChange(data, head.seq))
    return changes, head


async def _stream(watch: Watch, retry_ms: int) -> AsyncIterator[bytes]:
    yield retry_field(retry_ms)
    while True:
        updates = await watch.next()
        if updates:
            # In position order: the last id a client holds covers everything before it.
            changes = sorted((u for u in updates if isinstance(u, Change)), key=_position)
            yield b"".join(change.tagged_event for change in changes)
            if any(isinstance(c, BatchChange) and c.terminal for c in changes):
                return
        elif watch.closed:
            return  # the server is stopping: the client reconnects elsewhere
        else:
            yield HEARTBEAT


def _position(change: Change) -> int:
    return sys.maxsize if isinstance(change, _BatchGone) else change.version
