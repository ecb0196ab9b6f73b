"""jobhub.client against a real stack: submit, wait, cancel, events that resume or poll."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

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

from .conftest import ThreadedServer


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
