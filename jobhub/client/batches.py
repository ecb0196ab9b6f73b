"""Batches from Python: many jobs submitted and watched as one (``POST /batches``).

``AsyncClient`` and ``Client`` take these methods from the mixins here::

    async with AsyncClient(url) as hub:
        jobs = [{"function": "demo.count", "kwargs": {"steps": 3}}] * 20
        submitted = await hub.submit_batch(jobs)
        final = await hub.wait_batch(submitted.batch_id, on_update=lambda b: print(b.percent))
        print(final.status, final.counts.failed)

``batch_events`` follows the batch's stream (``BatchSnapshot`` for the batch, ``Snapshot``
for each child that changed); when the connection drops it resumes with ``Last-Event-ID``,
so no child's change is repeated or lost, and if the stream keeps failing it polls
``GET /batches/{id}`` instead (the batch alone). A batch's token, handed out when it is
submitted, is used for the batch's calls and its children's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import msgspec
from httpx_sse import aconnect_sse

from jobhub.client.api import job_path, raise_error
from jobhub.core.batch import BatchSnapshot, decode_batch
from jobhub.core.snapshot import Snapshot, decode

if TYPE_CHECKING:
    from jobhub.client.client import AsyncClient

__all__ = ["BatchEvent", "Batching", "SubmittedBatch", "SyncBatching"]

T = TypeVar("T")

BatchEvent = BatchSnapshot | Snapshot
"""What a batch's stream yields: the batch's snapshot, or a child's."""

_FAILURES = 3  # stream failures in a row before polling instead


class SubmittedBatch(msgspec.Struct, frozen=True):
    """What ``submit_batch`` answers: the batch's id, its children's ids in order, and its
    first snapshot."""

    batch_id: str
    job_ids: list[str]
    batch: BatchSnapshot


class _BatchHttp(Protocol):
    _http: httpx.AsyncClient
    _tokens: dict[str, str]
    _stream_timeout: httpx.Timeout
    _poll_interval: float

    def _auth(self, job_id: str | None = None) -> dict[str, str]: ...


def _path(batch_id: str, rest: str = "") -> str:
    return "/batches/" + job_path(batch_id).removeprefix("/jobs/") + rest  # its id checked


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise_error(response)
    return response


class Batching:
    """Batch calls for ``AsyncClient``."""

    async def submit_batch(
        self: _BatchHttp,
        jobs: Sequence[Mapping[str, Any]],
        *,
        batch_id: str | None = None,
        open: bool = False,
        callback_url: str | None = None,
    ) -> SubmittedBatch:
        """Start a batch of ``jobs`` (each ``{"function", "args"?, "kwargs"?, "job_id"?,
        "weight"?, "tags"?}``), all created or none. ``open`` keeps it open for more
        (``POST /batches/{id}/jobs``) until it is sealed."""
        body: dict[str, Any] = {"jobs": [dict(job) for job in jobs], "open": open}
        if batch_id is not None:
            body["batch_id"] = batch_id
        if callback_url is not None:
            body["callback_url"] = callback_url
        response = _checked(await self._http.post("/batches", json=body, headers=self._auth()))
        submitted = msgspec.json.decode(response.content, type=SubmittedBatch)
        token = response.headers.get("jobhub-token")
        if token:
            # It opens the batch and each of its children.
            for key in (submitted.batch_id, *submitted.job_ids):
                self._tokens[key] = token
        return submitted

    async def batch(self: _BatchHttp, batch_id: str) -> BatchSnapshot:
        """The batch's snapshot now."""
        response = await self._http.get(_path(batch_id), headers=self._auth(batch_id))
        return decode_batch(_checked(response).content)

    async def batch_jobs(
        self: _BatchHttp, batch_id: str, *, status: str | None = None
    ) -> list[Snapshot]:
        """Every child's snapshot (only those with ``status``, if given), in the batch's order."""
        found: list[Snapshot] = []
        after: int | None = 0
        while after is not None:
            params: dict[str, Any] = {"after": after, "limit": 100}
            if status is not None:
                params["status"] = status
            response = await self._http.get(
                _path(batch_id, "/jobs"), params=params, headers=self._auth(batch_id)
            )
            page = json.loads(_checked(response).content)
            found += [decode(json.dumps(job)) for job in page["jobs"]]
            after = page["next_after"]
        return found

    async def cancel_batch(self: _BatchHttp, batch_id: str) -> BatchSnapshot:
        """Cancel every child not ended; the batch ends ``canceled``."""
        response = await self._http.post(_path(batch_id, "/cancel"), headers=self._auth(batch_id))
        return decode_batch(_checked(response).content)

    async def retry_batch(self: _BatchHttp, batch_id: str) -> list[str]:
        """Run the failed and canceled children again (each as a new job in its place);
        returns the new jobs' ids."""
        response = await self._http.post(_path(batch_id, "/retry"), headers=self._auth(batch_id))
        ids: list[str] = json.loads(_checked(response).content)["job_ids"]
        return ids

    async def seal_batch(self: _BatchHttp, batch_id: str) -> BatchSnapshot:
        """No more children for an open batch."""
        response = await self._http.post(_path(batch_id, "/seal"), headers=self._auth(batch_id))
        return decode_batch(_checked(response).content)

    async def batch_events(self: _BatchHttp, batch_id: str) -> AsyncIterator[BatchEvent]:
        """The batch's snapshots and its children's, as they change, until the batch ends."""
        place: list[str] = []  # the last event id held
        failures = 0
        while failures < _FAILURES:
            try:
                async with contextlib.aclosing(_stream(self, batch_id, place)) as stream:
                    async for event in stream:
                        failures = 0
                        yield event
                        if isinstance(event, BatchSnapshot) and event.is_terminal:
                            return
                    if place and place[0] == "":
                        return  # 204: the end is already held
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass  # a dropped connection: resume from the place held
            failures += 1
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))
        seq = 0
        while True:  # the stream keeps failing: the batch alone, polled
            batch = await Batching.batch(self, batch_id)
            if batch.seq > seq:
                seq = batch.seq
                yield batch
            if batch.is_terminal:
                return
            await asyncio.sleep(self._poll_interval)

    async def wait_batch(
        self: _BatchHttp,
        batch_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the API's own deadline
        on_update: Callable[[BatchSnapshot], object] | None = None,
        on_job: Callable[[Snapshot], object] | None = None,
    ) -> BatchSnapshot:
        """The batch's final snapshot (its ``status`` says whether a child failed);
        ``on_update`` gets each batch snapshot as it comes, ``on_job`` each child's.
        Raises ``TimeoutError`` when ``timeout`` passes first."""
        last: BatchSnapshot | None = None
        async with asyncio.timeout(timeout):
            async for event in Batching.batch_events(self, batch_id):
                if isinstance(event, BatchSnapshot):
                    last = event
                    if on_update is not None:
                        on_update(event)
                elif on_job is not None:
                    on_job(event)
        if last is None or not last.is_terminal:
            last = await Batching.batch(self, batch_id)
        return last


async def _stream(
    client: _BatchHttp, batch_id: str, place: list[str]
) -> AsyncGenerator[BatchEvent]:
    headers = client._auth(batch_id)
    if place:
        headers["Last-Event-ID"] = place[0]
    async with aconnect_sse(
        client._http,
        "GET",
        _path(batch_id, "/events"),
        headers=headers,
        timeout=client._stream_timeout,
    ) as source:
        status = source.response.status_code
        if status == 204:
            place[:] = [""]
            return
        if 400 <= status < 500:
            await source.response.aread()
            raise_error(source.response)
        if status != 200:
            raise httpx.RemoteProtocolError(f"the stream answered {status}")
        async for sse in source.aiter_sse():
            if not sse.data:
                continue
            if sse.event == "error":  # the batch is gone: the API's 404 body
                raise_error(httpx.Response(404, content=sse.data.encode()))
            event: BatchEvent = decode(sse.data) if sse.event == "job" else decode_batch(sse.data)
            if sse.id:
                place[:] = [sse.id]
            yield event


class _BatchSync(Protocol):
    @property
    def _async(self) -> AsyncClient: ...

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T: ...


class SyncBatching:
    """``Batching`` for ``Client``, each call run on its loop thread (``on_update`` and
    ``on_job`` are called there too)."""

    def submit_batch(
        self: _BatchSync,
        jobs: Sequence[Mapping[str, Any]],
        *,
        batch_id: str | None = None,
        open: bool = False,
        callback_url: str | None = None,
    ) -> SubmittedBatch:
        """See ``AsyncClient.submit_batch``."""
        return self._call(
            self._async.submit_batch(jobs, batch_id=batch_id, open=open, callback_url=callback_url)
        )

    def batch(self: _BatchSync, batch_id: str) -> BatchSnapshot:
        return self._call(self._async.batch(batch_id))

    def batch_jobs(self: _BatchSync, batch_id: str, *, status: str | None = None) -> list[Snapshot]:
        return self._call(self._async.batch_jobs(batch_id, status=status))

    def cancel_batch(self: _BatchSync, batch_id: str) -> BatchSnapshot:
        return self._call(self._async.cancel_batch(batch_id))

    def retry_batch(self: _BatchSync, batch_id: str) -> list[str]:
        return self._call(self._async.retry_batch(batch_id))

    def seal_batch(self: _BatchSync, batch_id: str) -> BatchSnapshot:
        return self._call(self._async.seal_batch(batch_id))

    def wait_batch(
        self: _BatchSync,
        batch_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[BatchSnapshot], object] | None = None,
        on_job: Callable[[Snapshot], object] | None = None,
    ) -> BatchSnapshot:
        """See ``AsyncClient.wait_batch``."""
        return self._call(
            self._async.wait_batch(batch_id, timeout=timeout, on_update=on_update, on_job=on_job)
        )
