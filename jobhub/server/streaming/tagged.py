"""``GET /events?tag=user:42``: the live list of a tag's jobs, on one stream.

The stream first sends the current snapshot of each of the tag's newest jobs
(``TAG_STREAM_JOBS``, oldest of them first), then every snapshot of any job with the tag as
it is published, jobs created after the stream opened included: the write scripts publish
a tagged job's snapshots, its first one too, on the tag's channel beside its own
(jobhub/store/lua/snapshots.py). The channel is subscribed before the snapshots are read,
so nothing published in between is lost, and the watch takes only a higher ``seq`` per job
than it has sent, so nothing goes backwards. Snapshots are state: a slow reader gets each
job's newest one, not every step. The stream never ends on its own (a job may join the tag
at any time).

A reconnect (``Last-Event-ID`` or not) is a resume: it sends the current snapshot of each
of the tag's newest jobs once, then goes live, so whatever changed while the client was
away arrives as each job's newest state, once, without the states in between. A client
keeps the highest ``seq`` per job (jobhub.js does) and so draws no state twice. Event ids
are each snapshot's ``seq``, as on a job's own stream.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from jobhub.server.services import services_of
from jobhub.server.streaming.frames import HEARTBEAT, Frame, retry_field
from jobhub.server.streaming.sse import EventStream
from jobhub.server.streaming.watch import Watch
from jobhub.store.store import Store

__all__ = ["TAG_STREAM_JOBS", "tag_events"]

TAG_STREAM_JOBS = 200
"""How many of a tag's newest jobs a stream of the tag starts with (and sends again after a
reconnect): a user's live list, not their archive (``GET /jobs?tag=`` pages through that)."""


async def tag_events(request: Request, tag: str, retry_ms: tuple[int, int]) -> Response:
    """The stream of ``tag`` (already validated); ``retry_ms``: bounds of the reconnection
    delay given to the client."""
    services = services_of(request)
    await services.gate.tag(request, tag)
    store = services.store

    async def recent() -> list[bytes]:
        return await _newest(store, tag)

    watch, _ = await services.hub.watch_tag(tag, recent)
    return EventStream(_stream(watch, random.randint(*retry_ms)), watch, services.streams)


async def _newest(store: Store, tag: str) -> list[bytes]:
    jobs, _ = await store.list_jobs(tag=tag, limit=TAG_STREAM_JOBS)
    return jobs[::-1]


async def _stream(watch: Watch, retry_ms: int) -> AsyncIterator[bytes]:
    retry = retry_field(retry_ms)
    yield retry  # at once: the client knows the stream is open, even for a tag with no job
    while True:
        updates = await watch.next()
        if updates:
            yield b"".join(u.event for u in updates if isinstance(u, Frame))
        elif watch.closed:
            return  # the server is stopping: the client reconnects elsewhere
        else:
            yield HEARTBEAT
