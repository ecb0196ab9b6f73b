"""Places in a job's output: entry ids, their order, and the gap a reader was told of.

A job's output is a Redis stream whose ids are ``<ms>-<n>``: n the entry's ordinal in the
job's output (1, 2, 3, ...) and ms Redis's clock, never below the newest entry's (the
append step in jobhub/store/lua/snapshots.py). Ids order by their two numbers, not as text
(``9-0`` < ``10-0``). Every layer that holds a place (the store's reads, the streams, the
client) orders by ``entry_key``, and a reader whose place was trimmed away learns how many
entries it missed, exactly, from the first kept id alone: ``Gap.between``.

    Gap.between("1700000000000-200", "1700000000512-15001")
    # Gap(missed=14800, first='1700000000000-201', last='1700000000512-15000')
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["LAST_ENTRY", "Gap", "entry_key", "is_entry_id"]

_ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")

LAST_ENTRY = (2**64 - 1, 2**64 - 1)
"""The greatest id a Redis stream can hold, as ``entry_key`` gives it: each part is an
unsigned 64-bit number."""


def is_entry_id(text: str) -> bool:
    """Whether ``text`` is a Redis stream id, ``<ms>-<n>`` in ASCII digits that Redis takes
    (each part below 2**64: a larger one is an error from Redis, not an empty read)."""
    if _ENTRY_ID.fullmatch(text) is None:
        return False
    ms, _, seq = text.partition("-")
    return int(ms) < 2**64 and int(seq) < 2**64


def entry_key(entry_id: str) -> tuple[int, int]:
    """A Redis stream id (``1700000000000-3``) as a pair that orders as the stream does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Gap(msgspec.Struct, frozen=True):
    """Entries of a job's output that a reader never got: the job's capped output
    (``JOBHUB_OUTPUT_LIMIT``, the newest kept) dropped them before they were read, by a
    reader too slow or resuming too late. What follows it comes on in order."""

    missed: int
    """How many, exactly."""
    first: str = msgspec.field(name="from")
    """An id carrying the first missed entry's ordinal (the part after ``-``)."""
    last: str = msgspec.field(name="to")
    """An id carrying the last missed entry's ordinal: the place to read on from, since
    nothing kept lies before it."""

    @classmethod
    def between(cls, after: str, first_kept: str) -> Gap | None:
        """The gap between a reader's place ``after`` (an entry id, ``"0"`` for none) and
        the first entry the stream still holds after it; None where nothing is missing.

        Each id carries its entry's ordinal, and ids increase with it, so
        ``<ms of first kept>-<its n - 1>`` follows every missed entry and precedes every
        kept one, whatever the missed entries' own times were.
        """
        held_ms, held_n = (0, 0) if after in ("", "0") else entry_key(after)
        kept_ms, kept_n = entry_key(first_kept)
        missed = kept_n - held_n - 1
        if missed <= 0:
            return None
        return cls(missed, f"{held_ms}-{held_n + 1}", f"{kept_ms}-{kept_n - 1}")
