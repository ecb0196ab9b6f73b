"""Minting scoped tokens from Python: what a backend does for its signed-in user.

``AsyncClient`` and ``Client`` take these methods from the mixins here (client.py is the
client's streams and waits; this is the one call a backend adds to them)::

    async with AsyncClient(url, api_key=key) as hub:
        grant = await hub.token(scope={"tags": ["user:42"]}, actions=["read", "start"], ttl=900)
        # grant.token goes to the user's browser; grant.token_id revokes it:
        await hub.revoke_token(grant.token_id)
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import msgspec

from jobhub.client.api import raise_error

if TYPE_CHECKING:
    from jobhub.client.client import AsyncClient

__all__ = ["Minting", "ScopedToken", "SyncMinting"]

T = TypeVar("T")


class ScopedToken(msgspec.Struct, frozen=True):
    """A scoped token (``POST /tokens``): hand ``token`` to the browser."""

    token: str
    expires_at: str
    """ISO 8601, UTC."""
    token_id: str
    """What ``revoke_token`` takes."""


class _Http(Protocol):
    _http: httpx.AsyncClient

    def _auth(self, job_id: str | None = None) -> dict[str, str]: ...


class Minting:
    """``token`` and ``revoke_token`` for ``AsyncClient`` (they need its API key)."""

    async def token(
        self: _Http,
        *,
        scope: Mapping[str, Sequence[str]],
        actions: Sequence[str] = ("read",),
        ttl: float = 900,
    ) -> ScopedToken:
        """A token that opens the jobs of ``scope`` (``{"tags": [...], "jobs": [...],
        "batches": [...]}``) for ``actions`` (``read``, ``start``, ``cancel``, ``pause``),
        for ``ttl`` seconds."""
        body = {
            "scope": {name: list(values) for name, values in scope.items()},
            "actions": list(actions),
            "ttl_seconds": int(ttl),
        }
        response = await self._http.post("/tokens", json=body, headers=self._auth())
        if response.is_error:
            raise_error(response)
        return msgspec.json.decode(response.content, type=ScopedToken)

    async def revoke_token(self: _Http, token_id: str) -> None:
        """Refuse the token from now on, in every web process."""
        response = await self._http.delete(f"/tokens/{token_id}", headers=self._auth())
        if response.is_error:
            raise_error(response)


class _Sync(Protocol):
    @property
    def _async(self) -> AsyncClient: ...

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T: ...


class SyncMinting:
    """``Minting`` for ``Client``, each call run on its loop thread."""

    def token(
        self: _Sync,
        *,
        scope: Mapping[str, Sequence[str]],
        actions: Sequence[str] = ("read",),
        ttl: float = 900,
    ) -> ScopedToken:
        """See ``AsyncClient.token``."""
        return self._call(self._async.token(scope=scope, actions=actions, ttl=ttl))

    def revoke_token(self: _Sync, token_id: str) -> None:
        """See ``AsyncClient.revoke_token``."""
        self._call(self._async.revoke_token(token_id))
