"""A write's wire form: what ``Store.prepare`` encodes and ``Store.write_many`` sends.

A patch (the fields that change) travels as one argument of NUL-joined field and JSON
fragment pairs, led by its guards (``?once``, ``?run``, ``?from``); an output entry as
``!entry`` and its JSON. jobhub/store/lua/snapshots.py (``WRITE``) reads them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import msgspec

from jobhub.core.exceptions import InvalidRequest
from jobhub.core.snapshot import Snapshot, Status, utcnow
from jobhub.store.lua import FIELDS

__all__ = ["PATCHABLE", "PreparedWrite", "encode_entry", "encode_patch"]

PATCHABLE = frozenset(FIELDS) - {"job_id", "seq", "created_at", "updated_at", "tags"}
"""Snapshot fields a write may set; ``seq`` and ``updated_at`` are set by every write.
``tags`` are set once, at the create, where the job joins each tag's index."""

_encode = msgspec.json.Encoder().encode

# The fields of a queued snapshot that do not depend on the job or the time, encoded once.
_QUEUED_REST = b"\0".join(
    b"%s\0%s" % (name.encode(), _encode(getattr(Snapshot.queued("", ""), name)))
    for name in FIELDS
    if name not in {"job_id", "function", "seq", "created_at", "updated_at"}
)


class PreparedWrite:
    """A write encoded and ready to send (see ``Store.prepare``)."""

    __slots__ = ("init", "job_id", "owner", "patch", "run")

    def __init__(
        self, job_id: str, patch: bytes, init: bytes, owner: str | None, run: str | None
    ) -> None:
        self.job_id = job_id
        self.patch = patch
        self.init = init
        self.owner = owner
        self.run = run


def encode_patch(
    job_id: str,
    patch: Mapping[str, Any],
    *,
    function: str | None,
    only_from: Collection[Status],
    owner: str | None,
    run: str | None,
    hidden: Mapping[str, str] | None,
    once: tuple[str, int] | None,
) -> PreparedWrite:
    """A snapshot's patch, as ``Store.prepare`` describes it."""
    unknown = patch.keys() - PATCHABLE
    if unknown:
        raise InvalidRequest(f"not patchable snapshot fields: {sorted(unknown)}")
    now = _encode(utcnow())
    parts = [b"updated_at", now]
    if only_from:
        parts[:0] = [b"?from", b"|".join(_encode(status) for status in only_from)]
    if run is not None:
        parts[:0] = [b"?run", run.encode()]
    if once is not None:
        parts[:0] = _once(once)
    for name, value in patch.items():
        parts += [name.encode(), _encode(value)]
    for name, text in (hidden or {}).items():
        if not text or "\0" in text:
            # The script splits a patch at NULs: an empty or NUL-holding value would shift
            # every field after it.
            raise ValueError(f"hidden field {name!r} must be non-empty text without NUL")
        parts += [name.encode(), text.encode()]
    init = b""
    if function is not None:
        init = b"\0".join(
            [b"job_id", _encode(job_id), b"function", _encode(function), _QUEUED_REST,
             b"created_at", now, b"updated_at", now]
        )  # fmt: skip
    return PreparedWrite(job_id, b"\0".join(parts), init, owner, run)


def encode_entry(
    job_id: str, encoded: bytes, *, run: str | None, owner: str | None, once: tuple[str, int] | None
) -> PreparedWrite:
    """An output entry already encoded as JSON, as ``Store.prepare_entry`` describes it."""
    parts = [b"!entry", encoded]
    if run is not None:
        parts[:0] = [b"?run", run.encode()]
    if once is not None:
        parts[:0] = _once(once)
    return PreparedWrite(job_id, b"\0".join(parts), b"", owner, run)


def _once(once: tuple[str, int]) -> list[bytes]:
    token, number = once
    if number < 1:
        raise ValueError(f"a write's number counts from 1, got {number}")
    return [b"?once", token.encode(), str(number).encode()]
