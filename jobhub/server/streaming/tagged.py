"""``GET /events?tag=user:42``: the live list of a tag's jobs, on one stream.

The stream first sends the current snapshot of each of the tag's jobs changed last
(``TAG_STREAM_JOBS``, the least recently changed first), then every snapshot of any job
with the tag as it is published, jobs created after the stream opened included: the write
scripts publish a tagged job's snapshots, its first one too, on the tag's channel beside
its own (jobhub/store/lua/snapshots.py). The channel is subscribed before the snapshots are
read, so nothing published in between is lost, and the watch takes only a higher ``seq``
per job than it has sent, so nothing goes backwards. Snapshots are state: a slow reader
gets each job's newest one, not every step. The stream never ends on its own (a job may
join the tag at any time).

Each event's id is a version: every snapshot of the tag's jobs gets a higher one than the
last (Redis's clock in µs, kept increasing), and the tag's change log keeps the version of
each job's last change (``TAG_CHANGES``). ``Last-Event-ID`` resumes from there: the stream
sends the current snapshot of each job changed since, once, whatever the number of its
changes, and goes live; a job that did not change is not sent again. A client further back
than the log keeps (``TAG_CHANGES_KEPT`` jobs changed last), or with no id of ours, starts
over as a new stream does. A client keeps the highest ``seq`` per job (jobhub.js does).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from jobhub.core.parsing import ascii_int
from jobhub.server.services import services_of
from jobhub.server.streaming.frames import HEARTBEAT, Change, retry_field
from jobhub.server.streaming.sse import EventStream
from jobhub.server.streaming.watch import Watch
from jobhub.store.lua.tags import TAG_CHANGES_KEPT
from jobhub.store.store import Store

__all__ = ["TAG_STREAM_JOBS", "tag_events"]

TAG_STREAM_JOBS = 200
"""How many of a tag's jobs a new stream of the tag starts with (those changed last): a
user's live list, not their archive (``GET /jobs?tag=`` pages through that)."""


async def tag_events(request: Request, tag: str, retry_ms: tuple[int, int]) -> Response:
    """The stream of ``tag`` (already validated); ``retry_ms``: bounds of the reconnection
    delay given to the client."""
    services = services_of(request)
    grant = await services.gate.tag(request, tag)
    store = services.store

    async def read(after: int | None) -> list[Change]:
        return await _changes(store, tag, after)

    # Anything but a version is no cursor, never an error: the stream starts over.
    after = ascii_int(request.headers.get("last-event-id", "").strip())
    watch = await services.hub.watch_tag(tag, after, read)
    chunks = services.gate.held(_stream(watch, random.randint(*retry_ms)), grant)
    return EventStream(chunks, watch, services.streams)


async def _changes(store: Store, tag: str, after: int | None) -> list[Change]:
    if after is not None:
        found = await store.tag_changes(tag, after=after, limit=TAG_CHANGES_KEPT)
        if found is not None:
            return [Change(data, version) for version, data in found]
    found = await store.tag_changes(tag, after=None, limit=TAG_STREAM_JOBS)
    return [Change(data, version) for version, data in found or []]


async def _stream(watch: Watch, retry_ms: int) -> AsyncIterator[bytes]:
    retry = retry_field(retry_ms)
    yield retry  # at once: the client knows the stream is open, even for a tag with no job
    while True:
        updates = await watch.next()
        if updates:
            # In version order, so that the last id a client holds covers every change it
            # got before (a replay read after the subscription can follow newer live ones).
            changes = sorted((u for u in updates if isinstance(u, Change)), key=_version)
            yield b"".join(change.tagged_event for change in changes)
        elif watch.closed:
            return  # the server is stopping: the client reconnects elsewhere
        else:
            yield HEARTBEAT


def _version(change: Change) -> int:
    return change.version
