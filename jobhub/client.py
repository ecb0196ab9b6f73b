"""Python clients for the jobhub HTTP API: ``AsyncClient``, and ``Client`` for plain code.

    async with AsyncClient("http://localhost:8000") as hub:
        job = await hub.submit("demo.count", steps=5)
        async for snapshot in hub.events(job.job_id):
            print(snapshot.status, snapshot.percent, snapshot.message)
        final = await hub.wait(job.job_id)          # raises JobFailed / JobCanceled / WaitTimeout

    with Client("http://localhost:8000") as hub:
        print(hub.wait(hub.submit("demo.count", steps=5).job_id).result)

``events()`` follows the job's SSE stream; when the connection drops it reconnects with
``Last-Event-ID`` (so it never repeats a snapshot), and if the stream keeps failing it falls
back to polling ``GET /jobs/{id}``. Job tokens handed out by ``submit`` are used for that
job's calls; ``api_key`` for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, NoReturn, Self

import anyio.from_thread
import httpx
from httpx_sse import aconnect_sse

from .exceptions import ApiError, JobCanceled, JobFailed, WaitTimeout
from .snapshot import Snapshot, Status, decode

__all__ = ["AsyncClient", "Client"]

STREAM_FAILURES = 3
"""Stream failures in a row before ``events()`` polls instead."""


class AsyncClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        poll_interval: float = 1.0,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._api_key = api_key
        self._tokens: dict[str, str] = {}
        self._poll_interval = poll_interval

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _auth(self, job_id: str | None = None) -> dict[str, str]:
        credential = self._tokens.get(job_id or "") or self._api_key
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    async def submit(
        self,
        function: str,
        *args: Any,
        job_id: str | None = None,
        callback_url: str | None = None,
        **kwargs: Any,
    ) -> Snapshot:
        """Start a job (or find the one with this ``job_id``); returns its snapshot."""
        body: dict[str, Any] = {"function": function, "args": list(args), "kwargs": kwargs}
        if job_id is not None:
            body["job_id"] = job_id
        if callback_url is not None:
            body["callback_url"] = callback_url
        response = await self._http.post("/jobs", json=body, headers=self._auth())
        snapshot = _snapshot(response)
        token = response.headers.get("jobhub-token")
        if token:
            self._tokens[snapshot.job_id] = token
        return snapshot

    async def get(self, job_id: str) -> Snapshot:
        return _snapshot(await self._http.get(f"/jobs/{job_id}", headers=self._auth(job_id)))

    async def cancel(self, job_id: str) -> Snapshot:
        path = f"/jobs/{job_id}/cancel"
        return _snapshot(await self._http.post(path, headers=self._auth(job_id)))

    async def events(self, job_id: str) -> AsyncIterator[Snapshot]:
        """Every new snapshot of the job, in seq order, until it ends."""
        last: Snapshot | None = None
        failures = 0
        while failures < STREAM_FAILURES:
            headers = self._auth(job_id)
            if last is not None:
                headers["Last-Event-ID"] = str(last.seq)
            try:
                async with aconnect_sse(
                    self._http, "GET", f"/jobs/{job_id}/events", headers=headers
                ) as source:
                    status = source.response.status_code
                    if status == 204:
                        return  # we hold the final snapshot already
                    if 400 <= status < 500:
                        await source.response.aread()
                        _raise(source.response)  # not found, not allowed: no use retrying
                    if status != 200:
                        raise httpx.RemoteProtocolError(f"the stream answered {status}")
                    async for event in source.aiter_sse():
                        failures = 0
                        snapshot = decode(event.data)
                        if last is None or snapshot.seq > last.seq:
                            last = snapshot
                            yield snapshot
                        if snapshot.is_terminal:
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass  # a dropped connection: resume from the last seq
            if last is not None and last.is_terminal:
                return
            failures += 1
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))
        async for snapshot in self._poll(job_id, last):
            yield snapshot

    async def _poll(self, job_id: str, last: Snapshot | None) -> AsyncIterator[Snapshot]:
        while True:
            snapshot = await self.get(job_id)
            if last is None or snapshot.seq > last.seq:
                last = snapshot
                yield snapshot
            if snapshot.is_terminal:
                return
            await asyncio.sleep(self._poll_interval)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Snapshot:  # noqa: ASYNC109 - the API's own deadline, turned into WaitTimeout
        """The final snapshot of a finished job; raises ``JobFailed``, ``JobCanceled``, or
        ``WaitTimeout`` (with the last snapshot seen) when ``timeout`` passes first."""
        last: Snapshot | None = None
        try:
            async with asyncio.timeout(timeout):
                async for snapshot in self.events(job_id):
                    last = snapshot
        except TimeoutError:
            raise WaitTimeout(f"job {job_id!r} did not end within {timeout} s", last) from None
        if last is None:
            last = await self.get(job_id)
        if last.status is Status.FAILED:
            detail = last.error.detail if last.error else "failed"
            raise JobFailed(f"job {job_id!r} failed: {detail}", last)
        if last.status is Status.CANCELED:
            raise JobCanceled(f"job {job_id!r} was canceled", last)
        return last


class Client:
    """The same API for code without an event loop: each call runs on a private loop thread."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self._exit = contextlib.ExitStack()
        self._portal = self._exit.enter_context(anyio.from_thread.start_blocking_portal())
        self._client = self._portal.call(_make_client, base_url, options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._exit.close()

    def submit(self, function: str, *args: Any, **kwargs: Any) -> Snapshot:
        submit = functools.partial(self._client.submit, function, *args, **kwargs)
        snapshot: Snapshot = self._portal.call(submit)
        return snapshot

    def get(self, job_id: str) -> Snapshot:
        snapshot: Snapshot = self._portal.call(self._client.get, job_id)
        return snapshot

    def cancel(self, job_id: str) -> Snapshot:
        snapshot: Snapshot = self._portal.call(self._client.cancel, job_id)
        return snapshot

    def wait(self, job_id: str, *, timeout: float | None = None) -> Snapshot:
        wait = functools.partial(self._client.wait, job_id, timeout=timeout)
        snapshot: Snapshot = self._portal.call(wait)
        return snapshot

    def events(self, job_id: str, *, timeout: float | None = None) -> Iterator[Snapshot]:
        """Like ``AsyncClient.events``; stops (without error) when ``timeout`` passes."""
        iterator = self._client.events(job_id).__aiter__()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                snapshot: Snapshot = self._portal.call(asyncio.wait_for, iterator.__anext__(), left)
            except (StopAsyncIteration, TimeoutError):
                return
            yield snapshot


async def _make_client(base_url: str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(base_url, **options)


def _snapshot(response: httpx.Response) -> Snapshot:
    if response.is_error:
        _raise(response)
    return decode(response.content)


def _raise(response: httpx.Response) -> NoReturn:
    try:
        error = response.json()["error"]
        error_type, detail = str(error["type"]), str(error["detail"])
    except (ValueError, KeyError, TypeError):
        error_type, detail = "HTTPError", f"HTTP {response.status_code}"
    raise ApiError(response.status_code, error_type, detail)
