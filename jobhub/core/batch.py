"""A batch's snapshot: a set of jobs watched as one, and its JSON wire format.

Like a job's snapshot it is complete, not a delta, and ``seq`` orders them: it grows by one
with every change of the batch or of any of its children, in the same atomic step that
writes the child (jobhub/store/lua/batches.py), so its counts are exact at every ``seq``.

``percent`` is the weighted mean of the children's percents, an ended child counting 100;
each child's share only grows (a child set back to queued by its worker's loss keeps the
share it had reached), so a batch's ``percent`` goes back only when a child is retried.
``status`` is ``active`` until the batch is sealed and every child has ended, then
``canceled`` (the batch was canceled), ``failed`` (a child failed), ``canceled`` (a child
was canceled) or ``finished``.

    >>> snap = decode_batch(b'{"batch_id":"b1","status":"active","total":0,"counts":'
    ...     b'{"queued":0,"started":0,"running":0,"paused":0,"finished":0,"failed":0,'
    ...     b'"canceled":0},"percent":0.0,"sealed":false,"seq":1,'
    ...     b'"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}')
    >>> snap.is_terminal
    False
"""

from __future__ import annotations

import enum

import msgspec

__all__ = [
    "BATCH_ENDED",
    "MAX_BATCH_JOBS",
    "MAX_WEIGHT",
    "BatchCounts",
    "BatchSnapshot",
    "BatchStatus",
    "decode_batch",
]

MAX_BATCH_JOBS = 10_000
"""Children one request may create (``POST /batches``, ``POST /batches/{id}/jobs``)."""

MAX_WEIGHT = 1_000_000
"""The largest weight of a child: weights are integers, so a batch's percent is exact."""


class BatchStatus(enum.StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"


BATCH_ENDED = frozenset({BatchStatus.FINISHED, BatchStatus.FAILED, BatchStatus.CANCELED})


class BatchCounts(msgspec.Struct, frozen=True):
    """How many children have each status; they sum to the batch's ``total``."""

    queued: int = 0
    started: int = 0
    running: int = 0
    paused: int = 0
    finished: int = 0
    failed: int = 0
    canceled: int = 0


class BatchSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    # Field order is the wire order (jobhub/store/lua/batches.py writes the same).
    batch_id: str
    status: BatchStatus
    total: int
    counts: BatchCounts
    percent: float
    sealed: bool
    """Whether children can no longer be added (``POST /batches/{id}/seal``)."""
    seq: int
    created_at: str
    updated_at: str

    @property
    def is_terminal(self) -> bool:
        return self.status in BATCH_ENDED


_decoder = msgspec.json.Decoder(BatchSnapshot)


def decode_batch(data: bytes | str) -> BatchSnapshot:
    return _decoder.decode(data)
