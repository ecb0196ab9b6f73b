"""The event-stream endpoints: one job's snapshots and output, several jobs', or every job's.

GET /jobs/{id}/events      a job's snapshots and output until it ends
GET /events?jobs=a,b       several jobs on one connection, under cursor ids
GET /events                every job's snapshots (no output), for dashboards
GET /events?tag=user:42    a tag's jobs, those created later too (streaming/tagged.py)

On a job's stream, snapshots are unnamed events (``onmessage``); its output entries are
events named ``log`` and ``output``, in the order the job wrote them among its snapshots. A
new stream first replays the job's stored output, then its current snapshot, then goes
live. Each event's id is the client's position: ``<seq>`` (the snapshot it holds) while it
has received no output, then ``<seq>:<entry id>`` (and the entry of the job's output it
has last received). ``Last-Event-ID`` resumes from there: no entry repeated, snapshots
never backwards, and no entry lost unseen: where the job's capped output dropped entries
before the client read them (a slow reader, a late resume), an event named ``gap`` says
how many (``{"missed": N, "from": id, "to": id}``) and its id moves the client past them.
On ``/events?jobs=``, the id joins every job's position with ``.`` in the order listed
(``4.12:1700000000000-3``).

Each stream's first event carries a ``retry`` field, the browser's reconnection delay,
drawn per stream from ``RETRY_MS``. A stream whose job no longer exists (Redis came back
without its data) ends with an ``error`` event holding the API's JobNotFound body, and a
reconnect then answers 404; a stream of several jobs ends once each is final or gone.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jobhub.core.exceptions import InvalidRequest, JobNotFound
from jobhub.core.parsing import ascii_int
from jobhub.core.positions import Gap, is_entry_id
from jobhub.server.scopes import valid_tag
from jobhub.server.services import job_id_of, query_of, services_of, valid_id
from jobhub.server.streaming.frames import HEARTBEAT, Entry, Frame, gap_event, job_gone, retry_field
from jobhub.server.streaming.hub import OUTPUT_PAGE, Hub
from jobhub.server.streaming.sse import EventStream
from jobhub.server.streaming.tagged import tag_events
from jobhub.server.streaming.watch import Behind, Update, Vanished, Watch

__all__ = ["MAX_JOBS_PER_STREAM", "RETRY_MS", "Position", "job_events", "many_events"]

RETRY_MS = (1000, 4000)
"""Bounds of the reconnection delay each stream gives its client. Drawn per stream because
EventSource adds no jitter of its own: when a web process goes away, its thousands of
clients then come back spread over three seconds, not in one instant."""


def _retry() -> bytes:
    return retry_field(random.randint(*RETRY_MS))


class Position:
    """What a client holds of one job: its snapshot's ``seq``, and its place in the job's
    output (the id of the last entry it received, or None)."""

    __slots__ = ("entry", "seq")

    def __init__(self, seq: int = 0, entry: str | None = None) -> None:
        self.seq = seq
        self.entry = entry

    @classmethod
    def parse(cls, raw: str) -> Position | None:
        """``<seq>`` or ``<seq>:<entry id>``, ASCII digits only; None for anything else."""
        seq_part, colon, entry = raw.partition(":")
        seq = ascii_int(seq_part)
        if seq is None or (colon and not is_entry_id(entry)):
            return None
        return cls(seq, entry if colon else None)

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry}" if self.entry else str(self.seq)


class _Endpoint:
    """An ASGI endpoint from ``handler(request) -> response``, for ``Route``.

    Starlette wraps a function endpoint's ``send`` in one more exception handler of its own
    (the app's ``ExceptionMiddleware`` already handles what a handler raises, with the same
    handlers); every message of a stream then passes through that wrapper, at thousands
    of streams a few per cent of a web process's time (bench/fanout.py).
    """

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        await response(scope, receive, send)


async def _job_events(request: Request) -> Response:
    services = services_of(request)
    job_id = job_id_of(request)
    grant = await services.gate.job(request, job_id)
    # Anything but a position of ours is no cursor, never an error.
    held = Position.parse(request.headers.get("last-event-id", "").strip()) or Position()
    watch, [frame] = await services.hub.watch(
        [job_id], {job_id: held.seq}, entries={job_id: held.entry or "0"}
    )
    if frame is None:
        watch.close()
        raise JobNotFound(job_id)
    if frame.terminal and frame.seq <= held.seq:
        # The client has the final state (and so all output before it); 204 tells
        # EventSource to stop reconnecting.
        watch.close()
        return Response(status_code=204)
    chunks = services.gate.held(_stream(watch, services.hub, held), grant)
    return EventStream(chunks, watch, services.streams)


async def _many_events(request: Request) -> Response:
    """``GET /events?jobs=a,b,c``: one stream for several jobs (browsers allow only six
    HTTP/1.1 connections per origin, shared by every tab).

    Each event's id is a cursor: the seq the client then holds of every listed job, in the
    order listed (``4.0.12``). A reconnect's ``Last-Event-ID`` therefore tells which
    snapshots the client has: it gets each job's current snapshot unless it already has it,
    never one twice, and 204 once it holds the final snapshot of every job.
    """
    services = services_of(request)
    query = query_of(request)
    if "tag" in query:
        # A tag's jobs, those created later too (jobhub/server/streaming/tagged.py).
        return await tag_events(request, valid_tag(query["tag"]), RETRY_MS)
    if "jobs" not in query:
        # Every job's snapshots from now on, for a dashboard; the stream does not end.
        services.gate.key(request)
        watch = await services.hub.watch_all()
        return EventStream(_stream_all(watch), watch, services.streams)
    job_ids = _job_list(query["jobs"])
    grant = await services.gate.jobs(request, job_ids)
    held = _cursor(request.headers.get("last-event-id", ""), len(job_ids))
    watch, found = await services.hub.watch(
        job_ids,
        {job_id: p.seq for job_id, p in zip(job_ids, held, strict=True)},
        entries={job_id: p.entry or "0" for job_id, p in zip(job_ids, held, strict=True)},
    )
    # A job that is not there is unknown (404) unless the client's cursor holds a snapshot of
    # it: then it was deleted or expired since, and the stream says so and goes on with the
    # others, as it would have had the client stayed connected.
    missing: list[str] = []
    gone: list[str] = []
    done: set[str] = set()
    for job_id, frame, place in zip(job_ids, found, held, strict=True):
        if frame is None:
            (gone if place.seq else missing).append(job_id)
        elif frame.terminal and frame.seq <= place.seq:
            done.add(job_id)
    if missing:
        watch.close()
        raise JobNotFound(", ".join(missing))
    if len(done) + len(gone) == len(job_ids):
        watch.close()
        return Response(status_code=204)
    stream = _many_stream(watch, services.hub, job_ids, held, done, gone)
    return EventStream(services.gate.held(stream, grant), watch, services.streams)


job_events = _Endpoint(_job_events)
many_events = _Endpoint(_many_events)

MAX_JOBS_PER_STREAM = 100


def _job_list(raw: str) -> list[str]:
    job_ids = list(dict.fromkeys(j.strip() for j in raw.split(",") if j.strip()))
    if not job_ids:
        raise InvalidRequest("name the jobs to watch: /events?jobs=<id>,<id>,...")
    if len(job_ids) > MAX_JOBS_PER_STREAM:
        raise InvalidRequest(f"at most {MAX_JOBS_PER_STREAM} jobs per stream")
    return [valid_id(job_id) for job_id in job_ids]


def _cursor(raw: str, count: int) -> list[Position]:
    held = [Position.parse(part) for part in raw.strip().split(".")]
    if len(held) != count or None in held:
        # No cursor, or not one of this stream: start from scratch.
        return [Position() for _ in range(count)]
    return [p for p in held if p is not None]


async def _catch_up(
    watch: Watch, hub: Hub, job_id: str, held: Position, ids: Callable[[], str]
) -> AsyncIterator[bytes]:
    """The job's output from Redis, from the client's place on, a page per chunk, until the
    watch has caught up with what was published meanwhile. Where the stream's cap dropped
    entries the client never got, it is told how many (a ``gap`` event) before the rest."""
    while True:
        page = await hub.output(job_id, held.entry or "0")
        chunk = []
        # Checked on every page: the job may trim past the next page while this one is sent.
        gap = Gap.between(held.entry or "0", page[0][0]) if page else None
        if gap is not None:
            held.entry = gap.last
            chunk.append(gap_event(gap, ids()))
        for entry_id, data in page:
            held.entry = entry_id
            chunk.append(Entry(job_id, entry_id, data).event(ids()))
        if chunk:
            yield b"".join(chunk)
        if len(page) < OUTPUT_PAGE and watch.caught_up(job_id, held.entry or "0-0"):
            return


async def _updates(watch: Watch) -> AsyncIterator[list[Update] | None]:
    """A watch's news, batch by batch, with ``None`` when a heartbeat is due; it ends when
    the watch is closed (the server shutting down: the client reconnects elsewhere).
    ``EventStream`` closes the watch however the stream ends."""
    while True:
        updates = await watch.next()
        if updates:
            yield updates
        elif watch.closed:
            return
        else:
            yield None


async def _stream(watch: Watch, hub: Hub, held: Position) -> AsyncIterator[bytes]:
    """One job's snapshots and output; ends after a terminal snapshot, or when the job is
    gone (or the watch is closed, as in ``_updates``)."""
    retry = _retry()
    ids = held.__str__
    while True:
        # ``watch.next`` itself rather than ``_updates``: one async generator fewer to
        # resume at every delivered event of the busiest kind of stream.
        updates = await watch.next()
        if not updates:
            if watch.closed:
                return
            yield HEARTBEAT
            continue
        out = [retry]
        for update in updates:
            if isinstance(update, Behind):
                async for page in _catch_up(watch, hub, update.job_id, held, ids):
                    out.append(page)
                    yield b"".join(out)  # a page at a time: a long replay streams out
                    out = [b""]
            elif isinstance(update, Entry):
                held.entry = update.id
                out.append(update.event(ids()))
            elif isinstance(update, Vanished):
                yield b"".join(out) + job_gone(update.job_id)
                return
            else:
                held.seq = update.seq
                out.append(update.with_id(ids()) if held.entry else update.event)
                if update.terminal:
                    yield b"".join(out)
                    return
        if len(out) > 1:
            yield b"".join(out)
            retry = b""
        elif not out[0]:
            retry = b""  # a catch-up page carried it


async def _many_stream(
    watch: Watch,
    hub: Hub,
    job_ids: list[str],
    held: list[Position],
    done: set[str],
    gone: list[str],
) -> AsyncIterator[bytes]:
    """Several jobs' snapshots and output under cursor ids; ends once every job is final or
    gone (``gone``: jobs the client knew that no longer exist, told first)."""
    place = dict(zip(job_ids, held, strict=True))
    retry = _retry()
    if gone:
        done.update(gone)
        yield retry + b"".join(job_gone(job_id) for job_id in gone)
        retry = b""

    def ids() -> str:
        return ".".join(map(str, held))

    async for updates in _updates(watch):
        if updates is None:
            yield HEARTBEAT
            continue
        chunks = [retry]
        for update in updates:
            job_id = update.job_id
            if job_id in done:
                continue  # gone after its final state: the client has all there was
            if isinstance(update, Behind):
                async for page in _catch_up(watch, hub, job_id, place[job_id], ids):
                    chunks.append(page)
                    yield b"".join(chunks)
                    chunks = [b""]
            elif isinstance(update, Entry):
                place[job_id].entry = update.id
                chunks.append(update.event(ids()))
            elif isinstance(update, Vanished):
                done.add(job_id)
                chunks.append(job_gone(job_id))
            else:
                place[job_id].seq = update.seq
                if update.terminal:
                    done.add(job_id)
                chunks.append(update.with_id(ids()))
        if len(chunks) > 1:
            yield b"".join(chunks)  # one send for the batch
            retry = b""
        elif not chunks[0]:
            retry = b""
        if len(done) == len(job_ids):
            return


async def _stream_all(watch: Watch) -> AsyncIterator[bytes]:
    """Every job's snapshots; never ends on its own."""
    retry = _retry()
    async for updates in _updates(watch):
        if updates is None:
            yield HEARTBEAT
            continue
        # Only frames: the channel of every job is never resynced, so nothing vanishes.
        yield retry + b"".join(u.event for u in updates if isinstance(u, Frame))
        retry = b""
