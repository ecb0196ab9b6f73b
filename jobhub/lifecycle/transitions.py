"""The one transition point: every write that changes a job's status asks ``move`` first.

``move`` reads the row of the lifecycle table (jobhub/lifecycle/table.py), checks who asks
and where the job is to go, and returns the patch and its guard; the store applies the two
in one Lua step (``Store.write``, or a worker's coalesced ``WriteBatch.submit``), where the
guard is checked against the job's status as it is then. So the table is what every
transition goes through, the operator's, the run's, recovery's and the reconciler's alike,
and that step is the one place to hook what must change with a status in the same atomic
step.

    planned = move("cancel", Party.OPERATOR, {"message": "canceled"})
    data = await store.write(job_id, planned.patch, only_from=planned.sources)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobhub.core.snapshot import Status
from jobhub.lifecycle.table import TABLE, Party

__all__ = ["Move", "in_effect", "move"]


@dataclass(frozen=True, slots=True)
class Move:
    """A transition, planned: the snapshot fields to write (``status`` among them) and the
    statuses it may be written from."""

    operation: str
    patch: dict[str, Any]
    sources: frozenset[Status]


def move(
    operation: str,
    by: Party,
    patch: Mapping[str, Any] | None = None,
    *,
    target: Status | None = None,
) -> Move:
    """Plan ``operation`` asked for by ``by``: its row's target (or ``target``, which must be
    one of the row's targets, for a row with several) set in the patch, and the row's
    sources as the write's guard.

    Raises ``ValueError`` for an operation that is not in the table, a party the row does
    not name or a target it does not allow: each is a mistake in jobhub's own code, never
    the job's state, which the write's guard checks.
    """
    step = TABLE.get(operation)
    if step is None:
        raise ValueError(f"no transition {operation!r} in the lifecycle table")
    if by not in step.by:
        raise ValueError(f"{by.value} may not {operation} a job (only {sorted(step.by)})")
    if target is None:
        if len(step.targets) != 1:
            raise ValueError(f"{operation} has several targets: name one of them")
        [target] = step.targets
    elif target not in step.targets:
        raise ValueError(f"{operation} cannot end in {target.value}")
    if patch is not None and "status" in patch:
        raise ValueError("the table sets the status; the patch may not")
    return Move(operation, {"status": target, **(patch or {})}, step.sources)


def in_effect(operation: str, status: Status) -> bool:
    """Whether a job in ``status`` already is where ``operation`` would take it: asking for
    it again (a second click) is then answered with the job as it is, not refused."""
    targets = TABLE[operation].targets
    return len(targets) == 1 and status in targets
