"""jobhub.client against a real stack: submit, wait, cancel, events that resume or poll, and
a job's output among them: every entry once and in order, however it came."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobhub import (
    ApiError,
    AsyncClient,
    Client,
    JobCanceled,
    JobFailed,
    Settings,
    Status,
    WaitTimeout,
    create_app,
)
from jobhub.client.events import JobEvent, LogEntry, OutputChunk
from jobhub.core.snapshot import Snapshot
from tests.support.servers import ThreadedServer


async def test_submit_then_wait_for_finished_failed_canceled_and_timeout(base_url: str) -> None:
    async with AsyncClient(base_url) as hub:
        job = await hub.submit("demo.count", steps=2, delay=0.05)
        assert job.status is Status.QUEUED
        final = await hub.wait(job.job_id, timeout=20)
        assert (final.status, final.result) == (Status.FINISHED, {"steps": 2})

        failing = await hub.submit("demo.fail", after=1, delay=0.05)
        with pytest.raises(JobFailed) as failed:
            await hub.wait(failing.job_id, timeout=20)
        assert failed.value.snapshot.error.detail == "demo failure after 1 steps"

        slow = await hub.submit("demo.count", steps=50, delay=0.2)
        with pytest.raises(WaitTimeout) as timed_out:
            await hub.wait(slow.job_id, timeout=0.5)
        assert timed_out.value.snapshot is None or not timed_out.value.snapshot.is_terminal
        await hub.cancel(slow.job_id)
        with pytest.raises(JobCanceled):
            await hub.wait(slow.job_id, timeout=20)

        with pytest.raises(ApiError) as missing:
            await hub.get("no-such-job")
        assert (missing.value.status_code, missing.value.error_type) == (404, "JobNotFound")


async def test_events_resume_after_the_server_drops_the_connection(
    threaded: ThreadedServer,
    base_url: str,  # the session's worker runs the job
) -> None:
    async with AsyncClient(threaded.base_url) as hub:
        job = await hub.submit("demo.count", steps=12, delay=0.1)
        seen = []
        async with asyncio.timeout(20):
            async for snapshot in hub.events(job.job_id):
                seen.append(snapshot)
                if len(seen) == 3:
                    # The server cuts every open stream, as a stuck send or a restart would.
                    threaded.call(
                        lambda: [s.cut() for s in list(threaded.app.state.services.streams._open)]
                    )
    seqs = [s.seq for s in seen]
    assert seqs == sorted(set(seqs))  # resumed with Last-Event-ID: nothing repeated
    assert seen[-1].status is Status.FINISHED


class NoStreams:
    """In front of the app: every event stream fails, as behind a proxy that buffers them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("events"):
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def test_sync_client_falls_back_to_polling_when_streams_fail(redis_url: str, base_url: str) -> None:
    app = create_app(Settings(redis_url=redis_url))
    # Every stream is refused, so only polling can have brought the job's end.
    web = ThreadedServer(NoStreams(app))  # type: ignore[arg-type]
    with web, Client(web.base_url, poll_interval=0.1) as hub:
        job = hub.submit("demo.count", steps=3, delay=0.1)
        snapshots = list(hub.events(job.job_id))
        assert snapshots[-1].status is Status.FINISHED
        assert hub.wait(job.job_id).result == {"steps": 3}


class CountStreams:
    """In front of the app: counts the event streams opened."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.opened = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/events"):
            self.opened += 1
        await self.app(scope, receive, send)


async def test_events_wait_through_a_quiet_job_on_one_stream(redis_url: str, base_url: str) -> None:
    # The job is silent for longer than the client's request timeout, and the server's
    # heartbeat (15 s) does not come meanwhile: the stream must not count as dropped.
    counted = CountStreams(create_app(Settings(redis_url=redis_url)))
    web = ThreadedServer(counted)  # type: ignore[arg-type]
    with web:
        async with AsyncClient(web.base_url, timeout=0.5) as hub:
            job = await hub.submit("demo.count", steps=2, delay=1.5)
            seen = [snapshot async for snapshot in hub.events(job.job_id)]
    assert seen[-1].status is Status.FINISHED
    assert counted.opened == 1


def words(count: int) -> list[str]:
    return [f"w{i} " for i in range(count)]


def split(events: list[JobEvent]) -> tuple[list[Snapshot], list[str], list[str]]:
    """The snapshots, the chunks and the log messages among ``events``, each in order."""
    snapshots = [e for e in events if isinstance(e, Snapshot)]
    chunks = [e.data for e in events if isinstance(e, OutputChunk)]
    logs = [e.message for e in events if isinstance(e, LogEntry)]
    return snapshots, chunks, logs


async def test_events_with_output_yield_every_entry_once_in_order_among_snapshots(
    base_url: str,
) -> None:
    async with AsyncClient(base_url) as hub:
        job = await hub.submit("demo.tokens", count=40, delay=0.01)
        async with asyncio.timeout(30):
            events = [event async for event in hub.events(job.job_id, output=True)]
            plain = [event async for event in hub.events(job.job_id)]
    snapshots, chunks, logs = split(events)
    assert chunks == words(40)
    assert logs == [f"{n} words so far" for n in (10, 20, 30, 40)]
    assert events[-1] == snapshots[-1] and snapshots[-1].result == "".join(words(40))
    assert [s.seq for s in snapshots] == sorted({s.seq for s in snapshots})
    # A log line written before a report comes before that report's snapshot.
    for n in (10, 20, 30):
        report = next((s for s in snapshots if s.message == f"{n}/40 words"), None)
        if report is not None:
            assert events.index(report) > logs.index(f"{n} words so far")
    entry_ids = [e.id for e in events if not isinstance(e, Snapshot)]
    assert len(set(entry_ids)) == 44
    # Without output=True, the snapshots alone, as before.
    assert all(isinstance(event, Snapshot) for event in plain)
    assert plain[-1].status is Status.FINISHED


class Resumes:
    """In front of the app: the ``Last-Event-ID`` of every event stream opened."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.positions: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/events"):
            self.positions.append(Headers(scope=scope).get("last-event-id"))
        await self.app(scope, receive, send)


async def test_events_resume_mid_output_with_nothing_lost_or_repeated(
    redis_url: str, base_url: str
) -> None:
    app = create_app(Settings(redis_url=redis_url))
    resumes = Resumes(app)
    with ThreadedServer(resumes) as web:  # type: ignore[arg-type]
        async with AsyncClient(web.base_url) as hub:
            job = await hub.submit("demo.tokens", count=50, delay=0.02)
            events: list[JobEvent] = []
            async with asyncio.timeout(30):
                async for event in hub.events(job.job_id, output=True):
                    events.append(event)
                    if len(events) in (5, 25):  # cut every open stream, twice
                        web.call(lambda: [s.cut() for s in app.state.services.streams])
    # Each reconnect named the snapshot and the entry held: the server sent on from there.
    first, *resumed = resumes.positions
    ids = {e.id for e in events if not isinstance(e, Snapshot)}
    assert first is None and len(resumed) == 2
    for position in resumed:
        assert position is not None
        seq, _, entry = position.partition(":")
        assert seq.isdigit() and entry in ids, position
    snapshots, chunks, logs = split(events)
    assert chunks == words(50)
    assert logs == [f"{n} words so far" for n in range(10, 51, 10)]
    assert [s.seq for s in snapshots] == sorted({s.seq for s in snapshots})
    assert snapshots[-1].status is Status.FINISHED


class CutThenRefuse:
    """In front of the app: the first event stream is ended after ``after`` sends of its
    body, as a dropped connection would end it; every later stream is refused."""

    def __init__(self, app: ASGIApp, after: int) -> None:
        self.app = app
        self.after = after
        self.opened = 0
        self.streamed = 0  # output events that went out on the first stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/events"):
            await self.app(scope, receive, send)
            return
        self.opened += 1
        if self.opened > 1:
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        sends = 0

        async def cut_short(message: Message) -> None:
            nonlocal sends
            if sends > self.after:
                return  # the client has gone: what the app sends goes nowhere
            if message["type"] == "http.response.body":
                sends += 1
                self.streamed += message.get("body", b"").count(b"event: output")
                if sends > self.after:
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, cut_short)


async def test_events_go_from_stream_to_polling_mid_job_losing_and_repeating_nothing(
    redis_url: str, base_url: str
) -> None:
    guard = CutThenRefuse(create_app(Settings(redis_url=redis_url)), after=10)
    with ThreadedServer(guard) as web:  # type: ignore[arg-type]
        async with AsyncClient(web.base_url, poll_interval=0.1) as hub:
            job = await hub.submit("demo.tokens", count=50, delay=0.05)
            async with asyncio.timeout(30):
                events = [event async for event in hub.events(job.job_id, output=True)]
    snapshots, chunks, logs = split(events)
    assert 0 < guard.streamed < 50  # some came on the stream, the rest by polling
    assert guard.opened > 1
    assert chunks == words(50)
    assert logs == [f"{n} words so far" for n in range(10, 51, 10)]
    assert [s.seq for s in snapshots] == sorted({s.seq for s in snapshots})
    assert events[-1] == snapshots[-1] and snapshots[-1].status is Status.FINISHED


def test_sync_client_polls_every_entry_once_in_order(redis_url: str, base_url: str) -> None:
    web = ThreadedServer(NoStreams(create_app(Settings(redis_url=redis_url))))  # type: ignore[arg-type]
    with web, Client(web.base_url, poll_interval=0.1) as hub:
        # One written while it is polled; one longer than a page of GET /jobs/{id}/output.
        for count, delay in ((30, 0.05), (2500, 0.0)):
            job = hub.submit("demo.tokens", count=count, delay=delay)
            snapshots, chunks, logs = split(list(hub.events(job.job_id, output=True)))
            assert chunks == words(count)
            assert logs == [f"{n} words so far" for n in range(10, count + 1, 10)]
            assert snapshots[-1].result == "".join(words(count))


async def test_wait_hands_over_the_output_and_log_lines_as_they_come(base_url: str) -> None:
    async with AsyncClient(base_url) as hub:
        job = await hub.submit("demo.tokens", count=25, delay=0.01)
        chunks: list[str] = []
        logs: list[LogEntry] = []
        final = await hub.wait(job.job_id, timeout=30, on_output=chunks.append, on_log=logs.append)
        assert chunks == words(25) and final.result == "".join(chunks)
        assert [(e.level, e.message) for e in logs] == [("info", "10 words so far"),
                                                         ("info", "20 words so far")]  # fmt: skip

        # A failed job: its traceback is the last log line, handed over before JobFailed.
        failing = await hub.submit("demo.fail", after=1, delay=0.01)
        logs.clear()
        with pytest.raises(JobFailed):
            await hub.wait(failing.job_id, timeout=30, on_log=logs.append)
        assert [e.level for e in logs] == ["error"]
        assert logs[0].message.startswith("Traceback (most recent call last):")
        assert logs[0].message.endswith("ValueError: demo failure after 1 steps")


def test_sync_wait_collects_the_output(base_url: str) -> None:
    with Client(base_url) as hub:
        chunks: list[str] = []
        final = hub.wait(
            hub.submit("demo.tokens", count=12, delay=0).job_id, on_output=chunks.append
        )
    assert chunks == words(12) and final.status is Status.FINISHED


def test_a_sync_client_left_mid_stream_closes_without_a_word_at_exit(base_url: str) -> None:
    """Leave ``events`` after its first snapshot and close the client, ten times in one
    interpreter: nothing on stderr at exit. httpx's generators, closed by the garbage
    collector as tasks on the client's loop, once outlived it ("Task was destroyed but it is
    pending!", most runs of ten)."""
    script = textwrap.dedent(
        f"""
        from jobhub import Client
        for _ in range(10):
            with Client({base_url!r}) as hub:
                job = hub.submit("demo.count", steps=30, delay=0.05)
                for _ in hub.events(job.job_id):
                    break
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


_LEFT_OPEN = {
    "sync-closed-under-an-open-generator": """
        hub = Client(BASE)
        job = hub.submit("demo.tokens", count=200, delay=0.01)
        events = hub.events(job.job_id, output=True)
        next(events), next(events)
        hub.close()
        try:
            next(events)
        except RuntimeError as error:
            print(error)
        events.close()
        """,
    "sync-generators-of-two-clients-alive-at-exit": """
        a, b = Client(BASE), Client(BASE)
        left = []
        for hub in (a, b):
            job = hub.submit("demo.tokens", count=200, delay=0.01)
            left.append(hub.events(job.job_id, output=True))
        for events in left * 3:
            next(events)
        print("left open")  # nothing closed: the interpreter's exit does it
        """,
    "sync-generator-collected-on-the-loop-thread": """
        import gc
        hub = Client(BASE)
        job = hub.submit("demo.tokens", count=200, delay=0.01)
        class Cycle: pass
        cycle = Cycle(); cycle.me = cycle; cycle.events = hub.events(job.job_id, output=True)
        next(cycle.events), next(cycle.events)
        del cycle
        again = hub.submit("demo.tokens", count=5, delay=0.01)
        hub.wait(again.job_id, on_output=lambda _: gc.collect())  # gc on the loop thread
        assert hub.wait(hub.submit("demo.noop").job_id).status.value == "finished"
        hub.close()
        try:
            hub.get(job.job_id)
        except RuntimeError as error:
            print(error)
        """,
    "async-generator-outlives-asyncio-run": """
        import asyncio
        kept = []
        async def main():
            hub = AsyncClient(BASE)
            job = await hub.submit("demo.tokens", count=200, delay=0.01)
            events = hub.events(job.job_id, output=True)
            await anext(events), await anext(events)
            kept.append((hub, events))
        asyncio.run(main())
        print("left open")
        """,
    "async-client-closed-under-an-open-generator": """
        import asyncio
        async def main():
            hub = AsyncClient(BASE)
            job = await hub.submit("demo.tokens", count=200, delay=0.01)
            events = hub.events(job.job_id, output=True)
            await anext(events), await anext(events)
            await hub.aclose()
            print(f"{len([e async for e in events])} events after the close")
        asyncio.run(main())
        """,
}


@pytest.mark.parametrize("case", sorted(_LEFT_OPEN))
def test_a_client_closed_or_left_under_an_open_stream_says_nothing_at_exit(
    base_url: str, case: str
) -> None:
    """A stream of ``events`` left open, however the program ends: closed quietly. An event
    loop's shutdown closes every generator left open at once, and the client's nested ones
    (each closing the one inside it) collided: "athrow(): asynchronous generator is already
    running", every run. A closed sync ``Client`` says so, not "coroutine never awaited"."""
    script = f"from jobhub import AsyncClient, Client\nBASE = {base_url!r}\n"
    script += textwrap.dedent(_LEFT_OPEN[case])
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    said = {
        "sync-closed-under-an-open-generator": "this Client is closed",
        "sync-generator-collected-on-the-loop-thread": "this Client is closed",
        "async-client-closed-under-an-open-generator": "0 events after the close",
    }
    assert done.stdout == said.get(case, "left open") + "\n"


async def test_a_client_closed_under_a_watching_task_ends_its_stream(base_url: str) -> None:
    """``aclose()`` while another task waits on ``events()``: the stream ends. It once
    reconnected through the closed client and raised "the client has been closed"."""
    hub = AsyncClient(base_url)
    job = await hub.submit("demo.tokens", count=200, delay=0.01)
    seen: list[JobEvent] = []

    async def watch() -> None:
        async for event in hub.events(job.job_id, output=True):
            seen.append(event)

    watcher = asyncio.create_task(watch())
    async with asyncio.timeout(20):
        while len(seen) < 20:
            await asyncio.sleep(0.01)
    await hub.aclose()
    async with asyncio.timeout(10):
        await watcher  # ends, raising nothing
    assert 20 <= len(seen) < 200


def test_a_sync_client_closed_under_a_polling_thread_tells_it(
    redis_url: str, base_url: str
) -> None:
    """``close()`` while another thread's ``events()`` polls (asleep between polls): that
    thread hears the client is closed. It once waited forever on a loop already stopped."""
    web = ThreadedServer(NoStreams(create_app(Settings(redis_url=redis_url))))  # type: ignore[arg-type]
    with web:
        hub = Client(web.base_url, poll_interval=3)
        job = hub.submit("demo.tokens", count=300, delay=0.02)
        heard: list[BaseException] = []
        first = threading.Event()

        def watch() -> None:
            try:
                for _ in hub.events(job.job_id, output=True):
                    first.set()
            except BaseException as exc:
                heard.append(exc)

        thread = threading.Thread(target=watch)
        thread.start()
        assert first.wait(20)
        hub.close()
        thread.join(10)
        assert not thread.is_alive()
        assert [str(exc) for exc in heard] == ["this Client is closed"]
        assert httpx.post(f"{web.base_url}/jobs/{job.job_id}/cancel").status_code == 200


class CutPolls:
    """In front of the app: every event stream is refused, and every third read of a job's
    output is cut off after its head, as a dropped connection mid-answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.reads = 0
        self.cut = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/output"):
            self.reads += 1
            if self.reads % 3 == 0:
                self.cut += 1
                head = [(b"content-length", b"1000")]
                await send({"type": "http.response.start", "status": 200, "headers": head})
                raise ConnectionResetError("cut mid-answer")  # the server drops the link
        await NoStreams(self.app)(scope, receive, send)


def test_polling_rides_out_dropped_connections(redis_url: str, base_url: str) -> None:
    """Streams refused, so ``events()`` polls, and a third of its reads of the output are
    cut mid-answer: every entry once, in order, to the end. A poll's dropped connection
    once ended the watch with "peer closed connection"."""
    cutting = CutPolls(create_app(Settings(redis_url=redis_url)))
    web = ThreadedServer(cutting)  # type: ignore[arg-type]
    with web, Client(web.base_url, poll_interval=0.05) as hub:
        job = hub.submit("demo.tokens", count=80, delay=0.02)
        events = list(hub.events(job.job_id, output=True, timeout=60))
    snapshots, chunks, _ = split(events)
    assert chunks == words(80)
    assert snapshots[-1].status is Status.FINISHED
    assert cutting.cut > 0
