"""The event-stream endpoints: one job's snapshots, several jobs', or every job's.

GET /jobs/{id}/events      a job's snapshots until it ends
GET /events?jobs=a,b       several jobs on one connection, under cursor ids
GET /events                every job's snapshots, for dashboards
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from .exceptions import InvalidRequest, JobNotFound
from .hub import Frame, Watch
from .services import job_id_of, services_of, valid_id
from .sse import HEARTBEAT, EventStream

__all__ = ["MAX_JOBS_PER_STREAM", "job_events", "many_events"]


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id", "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 19 else 0


async def job_events(request: Request) -> Response:
    services = services_of(request)
    job_id = job_id_of(request)
    services.gate.job(request, job_id)
    seen = _last_event_id(request)
    # Subscribe first, then read: a snapshot published in between is caught by the
    # subscription, and one published before is in what we read.
    watch = await services.hub.watch([job_id], {job_id: seen})
    try:
        data = await services.store.get(job_id)
    except BaseException:
        watch.close()
        raise
    if data is None:
        watch.close()
        raise JobNotFound(job_id)
    frame = Frame(data)
    if frame.terminal and frame.seq <= seen:
        # The client has the final state; 204 tells EventSource to stop reconnecting.
        watch.close()
        return Response(status_code=204)
    watch.offer(frame)
    return EventStream(_stream(watch), watch, services.streams)


async def many_events(request: Request) -> Response:
    """``GET /events?jobs=a,b,c``: one stream for several jobs (browsers allow only six
    HTTP/1.1 connections per origin, shared by every tab).

    Each event's id is a cursor: the seq the client then holds of every listed job, in the
    order listed (``4.0.12``). A reconnect's ``Last-Event-ID`` therefore tells which
    snapshots the client has: it gets each job's current snapshot unless it already has it,
    never one twice, and 204 once it holds the final snapshot of every job.
    """
    services = services_of(request)
    if "jobs" not in request.query_params:
        # Every job's snapshots from now on, for a dashboard; the stream does not end.
        services.gate.key(request)
        watch = await services.hub.watch_all()
        return EventStream(_stream_all(watch), watch, services.streams)
    job_ids = _job_list(request.query_params.get("jobs", ""))
    services.gate.jobs(request, job_ids)
    seen = _cursor(request.headers.get("last-event-id", ""), len(job_ids))
    watch = await services.hub.watch(job_ids, dict(zip(job_ids, seen, strict=True)))
    try:
        datas = await services.store.get_many(job_ids)
    except BaseException:
        watch.close()
        raise
    missing = [job_id for job_id, data in zip(job_ids, datas, strict=True) if data is None]
    if missing:
        watch.close()
        raise JobNotFound(", ".join(missing))
    frames = [Frame(data) for data in datas if data is not None]
    done = {f.job_id for f, held in zip(frames, seen, strict=True) if f.terminal and f.seq <= held}
    if len(done) == len(job_ids):
        watch.close()
        return Response(status_code=204)
    for frame in frames:
        watch.offer(frame)
    return EventStream(_many_stream(watch, job_ids, seen, done), watch, services.streams)


MAX_JOBS_PER_STREAM = 100


def _job_list(raw: str) -> list[str]:
    job_ids = list(dict.fromkeys(j.strip() for j in raw.split(",") if j.strip()))
    if not job_ids:
        raise InvalidRequest("name the jobs to watch: /events?jobs=<id>,<id>,...")
    if len(job_ids) > MAX_JOBS_PER_STREAM:
        raise InvalidRequest(f"at most {MAX_JOBS_PER_STREAM} jobs per stream")
    return [valid_id(job_id) for job_id in job_ids]


def _cursor(raw: str, count: int) -> list[int]:
    parts = raw.strip().split(".")
    if len(parts) != count or not all(p.isdigit() and len(p) < 19 for p in parts):
        return [0] * count  # no cursor, or not one of this stream: start from scratch
    return [int(p) for p in parts]


async def _updates(watch: Watch) -> AsyncIterator[list[Frame] | None]:
    """A watch's news, batch by batch, with ``None`` when a heartbeat is due; it ends when
    the watch is closed (the server shutting down: the client reconnects elsewhere).
    ``EventStream`` closes the watch however the stream ends."""
    while True:
        frames = await watch.next()
        if frames:
            yield frames
        elif watch.closed:
            return
        else:
            yield None


async def _stream(watch: Watch) -> AsyncIterator[bytes]:
    """One job's snapshots; ends after a terminal one."""
    async for frames in _updates(watch):
        if frames is None:
            yield HEARTBEAT
            continue
        for frame in frames:
            yield frame.event
        if frames[-1].terminal:
            return


async def _many_stream(
    watch: Watch, job_ids: list[str], seen: list[int], done: set[str]
) -> AsyncIterator[bytes]:
    """Several jobs' snapshots under cursor ids; ends once every job is terminal."""
    position = {job_id: i for i, job_id in enumerate(job_ids)}
    async for frames in _updates(watch):
        if frames is None:
            yield HEARTBEAT
            continue
        for frame in frames:
            seen[position[frame.job_id]] = frame.seq
            if frame.terminal:
                done.add(frame.job_id)
            yield frame.with_id(".".join(map(str, seen)))
        if len(done) == len(job_ids):
            return


async def _stream_all(watch: Watch) -> AsyncIterator[bytes]:
    """Every job's snapshots; never ends on its own."""
    async for frames in _updates(watch):
        if frames is None:
            yield HEARTBEAT
            continue
        for frame in frames:
            yield frame.event
