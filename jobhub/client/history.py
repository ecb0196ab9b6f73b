"""The archive from Python: ended jobs past Redis's TTL, their counts and run times, and a
bulk retry of the failed ones. ``AsyncClient`` and ``Client`` take these methods from the
mixins here; ``get(job_id)`` answers an archived job by itself (``GET /jobs/{id}`` falls
back to the archive)::

    async with AsyncClient(url, api_key=key) as hub:
        page = await hub.history(function="reports.build", status="failed", since="7d")
        older = await hub.history(function="reports.build", cursor=page.next_cursor)
        stats = await hub.archive_stats(since="30d", bucket="day")
        counted = await hub.retry_failed(function="reports.build", since="1d")
        done = await hub.retry_failed(function="reports.build", since="1d",
                                      count=counted["count"])
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import msgspec

from jobhub.client.api import raise_error

if TYPE_CHECKING:
    from jobhub.client.client import AsyncClient

__all__ = ["ArchivedJob", "History", "HistoryPage", "SyncHistory", "history_query"]

T = TypeVar("T")


class ArchivedJob(msgspec.Struct, frozen=True):
    """One ended job as the archive keeps it (``GET /archive/jobs``)."""

    job_id: str
    function: str
    status: str
    ended_at: str
    created_at: str
    tags: list[str] = []
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    result: Any = None
    error: dict[str, Any] | None = None
    attempt: int | None = None
    retry_of: str | None = None
    worker: str | None = None
    started_at: str | None = None
    queued_seconds: float | None = None
    run_seconds: float | None = None


class HistoryPage(msgspec.Struct, frozen=True):
    jobs: list[ArchivedJob]
    next_cursor: str | None
    """Pass it as ``cursor`` for the next (older) page; None after the last."""


def history_query(
    *,
    function: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    since: str | None = None,
    until: str | None = None,
    error: str | None = None,
    args: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The query string of a filter; ``args`` maps paths to values (``{"user": 42}``)."""
    named = {"function": function, "status": status, "tag": tag, "since": since}
    named |= {"until": until, "error": error}
    query = {name: value for name, value in named.items() if value is not None}
    for path, value in (args or {}).items():
        query[f"arg.{path}"] = msgspec.json.encode(value).decode()
    return query


class _ArchiveHttp(Protocol):
    _http: httpx.AsyncClient

    def _auth(self, job_id: str | None = None) -> dict[str, str]: ...


class History:
    """``history``, ``archive_stats`` and ``retry_failed`` for ``AsyncClient``."""

    async def history(
        self: _ArchiveHttp, *, limit: int = 50, cursor: str | None = None, **filters: Any
    ) -> HistoryPage:
        """A page of ended jobs, newest first; ``filters`` are ``history_query``'s."""
        params = history_query(**filters) | {"limit": str(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._http.get("/archive/jobs", params=params, headers=self._auth())
        if response.is_error:
            raise_error(response)
        return msgspec.json.decode(response.content, type=HistoryPage)

    async def archive_stats(self: _ArchiveHttp, *, bucket: str = "hour", **filters: Any) -> Any:
        """Jobs per bucket by status and run-time percentiles per function (a dict, as
        ``GET /archive/stats`` answers)."""
        params = history_query(**filters) | {"bucket": bucket}
        response = await self._http.get("/archive/stats", params=params, headers=self._auth())
        if response.is_error:
            raise_error(response)
        return response.json()

    async def retry_failed(self: _ArchiveHttp, *, count: int | None = None, **filters: Any) -> Any:
        """Without ``count``: how many failed jobs ``filters`` (``history_query``'s, as for
        ``history``) would retry. With the count that answered: retry them (``ApiError`` 409
        when the count changed since)."""
        body: dict[str, Any] = {"filter": history_query(**filters)}
        if count is not None:
            body["count"] = count
        response = await self._http.post("/archive/retry", json=body, headers=self._auth())
        if response.is_error:
            raise_error(response)
        return response.json()


class _ArchiveSync(Protocol):
    @property
    def _async(self) -> AsyncClient: ...

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T: ...


class SyncHistory:
    """``History`` for ``Client``, each call run on its loop thread."""

    def history(
        self: _ArchiveSync, *, limit: int = 50, cursor: str | None = None, **filters: Any
    ) -> HistoryPage:
        """See ``AsyncClient.history``."""
        return self._call(self._async.history(limit=limit, cursor=cursor, **filters))

    def archive_stats(self: _ArchiveSync, *, bucket: str = "hour", **filters: Any) -> Any:
        """See ``AsyncClient.archive_stats``."""
        return self._call(self._async.archive_stats(bucket=bucket, **filters))

    def retry_failed(self: _ArchiveSync, *, count: int | None = None, **filters: Any) -> Any:
        """See ``AsyncClient.retry_failed``."""
        return self._call(self._async.retry_failed(count=count, **filters))
