"""The lifecycle table: every change of a job's status, from where, to where, and by whom.

A job has one state machine, its snapshot's ``status``. Every change of it is a row here,
and every write that changes it asks this table first (``jobhub/lifecycle/transitions.py``:
``move``), then applies it in one guarded Lua step: the write applies only while the job's
status is among the row's sources, so two parties racing (a cancel and a finish, two
recoverers) can never both win. ARQ's own records follow from it
(``jobhub/lifecycle/arq.py``).

==========  ==============================  =========  ========================================
operation   from                            to         by
==========  ==============================  =========  ========================================
create      (no job)                        queued     the client (``POST /jobs``), the
                                                       reconciler (adopting a job only ARQ knew)
start       queued, started, running,       started    a worker's run begins; it gets a new
            paused                                     run token: the newest start wins and
                                                       older runs are fenced off
report      started, running                running    the run (``job.report``); from paused
                                                       it waits for resume
pause       running                         paused     an operator
resume      paused                          running    an operator
requeue     started, running, paused        queued     the run raised ``Retry`` with tries left
finish      started, running, paused        finished   the run returned
fail        started, running, paused        failed     the run raised, ran out of time or
                                                       tries, or returned what JSON cannot carry
cancel      queued, started, running,       canceled   an operator; ARQ is asked to abort it
            paused
lose        started, running, paused        queued /   recovery: the run's worker stopped
                                            failed     beating; run again if tries are left
settle      queued, started, running,       finished   the reconciler: ARQ ended the job
            paused                          / failed   without jobhub's wrapper, or no longer
                                                       knows it
hand_back   queued                          queued     the reconciler: a worker without the
                                                       job's function took it; another has it
retry       finished, failed, canceled      queued     an operator: a new job (its id derived
                                            (new job)  from the old one's) runs it again
delete      finished, failed, canceled      (gone)     an operator
==========  ==============================  =========  ========================================

An operation already in effect is not an error for the operator who asks for it twice:
cancelling a canceled job, pausing a paused one or resuming a running one answers the job as
it is (``in_effect``). The console learns what it may offer from ``actions``, never from a
copy of this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from jobhub.core.snapshot import AT_WORK, TERMINAL, Status

__all__ = [
    "ACTIONS_BY_STATUS",
    "ACTIVE",
    "OPERATOR_ACTIONS",
    "TABLE",
    "Party",
    "Transition",
    "actions",
]

ACTIVE = frozenset({Status.QUEUED, *AT_WORK})
"""Every status that is not terminal."""


class Party(StrEnum):
    """Who changes a job's status."""

    CLIENT = "client"
    """Whoever starts jobs (``POST /jobs``)."""
    OPERATOR = "operator"
    """Whoever acts on a job already there (the API, the console, the CLI)."""
    WORKER = "worker"
    """A worker process taking a job from ARQ's queue."""
    RUN = "run"
    """One run of a job, fenced by its token."""
    RECOVERY = "recovery"
    """A live worker acting for a lost one (jobhub/worker/recovery.py)."""
    RECONCILER = "reconciler"
    """The walk over jobs that ARQ ended behind jobhub's back (reconciler.py)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the table: a job may make it from ``sources`` to one of ``targets``, and
    only ``by`` may ask for it. No sources: the job does not exist yet. No targets: the job
    is gone afterwards."""

    sources: frozenset[Status]
    targets: frozenset[Status]
    by: frozenset[Party]


def _row(sources: frozenset[Status], targets: set[Status], *by: Party) -> Transition:
    return Transition(sources, frozenset(targets), frozenset(by))


_NONE: frozenset[Status] = frozenset()

TABLE: Mapping[str, Transition] = {
    "create": _row(_NONE, {Status.QUEUED}, Party.CLIENT, Party.RECONCILER),
    "start": _row(ACTIVE, {Status.STARTED}, Party.WORKER),
    "report": _row(frozenset({Status.STARTED, Status.RUNNING}), {Status.RUNNING}, Party.RUN),
    "pause": _row(frozenset({Status.RUNNING}), {Status.PAUSED}, Party.OPERATOR),
    "resume": _row(frozenset({Status.PAUSED}), {Status.RUNNING}, Party.OPERATOR),
    "requeue": _row(AT_WORK, {Status.QUEUED}, Party.RUN),
    "finish": _row(AT_WORK, {Status.FINISHED}, Party.RUN),
    "fail": _row(AT_WORK, {Status.FAILED}, Party.RUN),
    "cancel": _row(ACTIVE, {Status.CANCELED}, Party.OPERATOR),
    "lose": _row(AT_WORK, {Status.QUEUED, Status.FAILED}, Party.RECOVERY),
    "settle": _row(ACTIVE, {Status.FINISHED, Status.FAILED}, Party.RECONCILER),
    "hand_back": _row(frozenset({Status.QUEUED}), {Status.QUEUED}, Party.RECONCILER),
    "retry": _row(TERMINAL, {Status.QUEUED}, Party.OPERATOR),
    "delete": _row(TERMINAL, set(), Party.OPERATOR),
}
"""The table above, as data: what ``transitions.move`` reads for every write of a status."""

OPERATOR_ACTIONS = ("cancel", "pause", "resume", "retry", "delete")
"""What an operator may ask of a job, in the order the console shows them."""


def actions(status: Status) -> list[str]:
    """The operator's actions that apply to a job in ``status``: those whose row starts
    there."""
    return [name for name in OPERATOR_ACTIONS if status in TABLE[name].sources]


ACTIONS_BY_STATUS = {status.value: actions(status) for status in Status}
"""``actions`` of every status: what the console enables as a job's status changes."""
