"""The lifecycle table, checked against what a real Redis does with every transition.

A model-based test (hypothesis' stateful testing): random sequences of operations from every
party (clients, workers and their runs, operators, recovery, the reconciler) on a few jobs,
against a real redis-server, each applied the way jobhub applies it (``transitions.move``,
then the store's one Lua step, or the ``Lifecycle`` an operator goes through). After each
step the job's stored status and seq must be what the table says: the target when the job
was in one of the row's sources (and the run was the job's newest), unchanged and refused
otherwise. A walk over the table then applies every row from every one of its sources.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

import pytest
import redis.asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from jobhub.core.exceptions import JobIsFinal, JobNotFound, RunSuperseded, WrongStatus
from jobhub.core.snapshot import TERMINAL, JobError, Snapshot, Status, decode
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.lifecycle.runs import NO_RUN, new_run_token
from jobhub.lifecycle.table import ACTIVE, TABLE, Party, actions
from jobhub.lifecycle.transitions import in_effect, move
from jobhub.store.store import Store

T = TypeVar("T")

JOBS = 3
RUN_OPERATIONS = {
    "report": {"percent": 50.0, "message": "half"},
    "requeue": {"message": "again"},
    "finish": {"percent": 100.0, "message": "finished", "result": 1},
    "fail": {"error": JobError("ValueError", "no")},
}
OPERATOR_OPERATIONS = ("cancel", "pause", "resume")


class Applied:
    """Which (operation, from status) pairs of the table a run of the model applied."""

    pairs: ClassVar[set[tuple[str, Status]]] = set()


class LifecycleModel(RuleBasedStateMachine):
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = redis.asyncio.Redis.from_url(self.redis_url)
        self.store = Store(self.redis, result_ttl_seconds=60)
        self.lifecycle = Lifecycle(self.redis, self.store, queue_name="model:queue")
        prefix = secrets.token_hex(4)
        self.ids = [f"model-{prefix}-{n}" for n in range(JOBS)]
        self.status: dict[str, Status | None] = dict.fromkeys(self.ids)
        self.seq: dict[str, int] = dict.fromkeys(self.ids, 0)
        # The job's newest run token: None before any run (no token stored), NO_RUN once
        # recovery fenced its run off.
        self.newest: dict[str, str | None] = dict.fromkeys(self.ids)
        self.runs: dict[str, list[str]] = {job_id: [] for job_id in self.ids}

    def run(self, coroutine: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coroutine)  # type: ignore[arg-type]

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    # -- what the table predicts ---------------------------------------------------------

    def expect(self, job_id: str, operation: str, run: str | None) -> type[Exception] | None:
        """The refusal the store must answer with, or None where the write applies. The
        store checks in this order: the job exists, it has not ended, the run is its
        newest, its status is one the row starts from."""
        status = self.status[job_id]
        if status is None:
            return JobNotFound
        if status in TERMINAL:
            return JobIsFinal
        if run is not None and run != self.newest[job_id]:
            return RunSuperseded
        if status not in TABLE[operation].sources:
            return WrongStatus
        return None

    def applied(self, job_id: str, operation: str, target: Status) -> None:
        status = self.status[job_id]
        assert status is not None
        Applied.pairs.add((operation, status))
        self.status[job_id] = target
        self.seq[job_id] += 1

    def write(
        self,
        job_id: str,
        operation: str,
        by: Party,
        patch: dict[str, Any],
        *,
        target: Status | None = None,
        run: str | None = None,
        hidden: dict[str, str] | None = None,
    ) -> bool:
        """Apply one transition as jobhub does; returns whether it applied."""
        step = move(operation, by, patch, target=target)
        landed = step.patch["status"]
        refusal = self.expect(job_id, operation, run)
        try:
            self.run(
                self.store.write(job_id, step.patch, only_from=step.sources, run=run, hidden=hidden)
            )
        except (JobNotFound, JobIsFinal, RunSuperseded, WrongStatus) as exc:
            assert refusal is not None and isinstance(exc, refusal), (operation, exc)
            return False
        assert refusal is None, (operation, self.status[job_id], "applied, not refused")
        self.applied(job_id, operation, landed)
        return True

    # -- the parties ---------------------------------------------------------------------

    @initialize(at_work=st.integers(0, JOBS), paused=st.booleans())
    def some_jobs_are_at_work(self, at_work: int, paused: bool) -> None:
        """Nothing exists yet; then some jobs are created, started and reporting, so that
        the steps that follow meet jobs in every status, not only new and ended ones."""
        found = self.run(self.store.get_many(self.ids))
        assert found == [None] * JOBS
        for n in range(at_work):
            self.a_client_creates(n)
            self.a_worker_starts_a_run(n)
            self.a_run_writes(n, "report", stale=False)
        if at_work and paused:
            self.an_operator_acts(0, "pause")

    @rule(n=st.integers(0, JOBS - 1))
    def a_client_creates(self, n: int) -> None:
        job_id = self.ids[n]
        move("create", Party.CLIENT)
        created, _ = self.run(self.store.create(Snapshot.queued(job_id, "model.f")))
        assert created == (self.status[job_id] is None)
        if created:
            self.status[job_id] = Status.QUEUED
            self.seq[job_id] = 1

    @rule(n=st.integers(0, JOBS - 1))
    def a_worker_starts_a_run(self, n: int) -> None:
        job_id = self.ids[n]
        token = new_run_token()
        patch = {"percent": 0.0, "message": "started"}
        if self.write(job_id, "start", Party.WORKER, patch, hidden={"run": token}):
            self.newest[job_id] = token
            self.runs[job_id].append(token)

    @rule(
        n=st.integers(0, JOBS - 1),
        operation=st.sampled_from(sorted(RUN_OPERATIONS)),
        stale=st.booleans(),
    )
    def a_run_writes(self, n: int, operation: str, stale: bool) -> None:
        job_id = self.ids[n]
        runs = self.runs[job_id]
        if not runs:
            return
        token = runs[0] if stale else runs[-1]
        self.write(job_id, operation, Party.RUN, dict(RUN_OPERATIONS[operation]), run=token)

    @rule(n=st.integers(0, JOBS - 1), operation=st.sampled_from(OPERATOR_OPERATIONS))
    def an_operator_acts(self, n: int, operation: str) -> None:
        job_id = self.ids[n]
        status = self.status[job_id]
        act = getattr(self.lifecycle, operation)
        try:
            data = self.run(act(job_id))
        except (JobNotFound, JobIsFinal, WrongStatus) as exc:
            refusal = self.expect(job_id, operation, None)
            assert refusal is not None and isinstance(exc, refusal), (operation, exc)
            assert status is None or not in_effect(operation, status)
            return
        assert status is not None
        if in_effect(operation, status):
            # Asked twice: answered with the job as it is, nothing written.
            assert decode(data).seq == self.seq[job_id]
            return
        assert self.expect(job_id, operation, None) is None
        [target] = TABLE[operation].targets
        self.applied(job_id, operation, target)

    @rule(n=st.integers(0, JOBS - 1))
    def an_operator_deletes(self, n: int) -> None:
        job_id = self.ids[n]
        status = self.status[job_id]
        try:
            self.run(self.lifecycle.delete(job_id))
        except (JobNotFound, WrongStatus) as exc:
            assert (JobNotFound if status is None else WrongStatus) is type(exc), exc
            assert status not in TABLE["delete"].sources
            return
        assert status in TABLE["delete"].sources
        Applied.pairs.add(("delete", status))
        # Gone: its id may name a new job, with runs of its own.
        self.status[job_id], self.seq[job_id] = None, 0
        self.newest[job_id], self.runs[job_id] = None, []

    @rule(n=st.integers(0, JOBS - 1), again=st.booleans())
    def recovery_finds_the_run_lost(self, n: int, again: bool) -> None:
        job_id = self.ids[n]
        target = Status.QUEUED if again else Status.FAILED
        patch: dict[str, Any] = {"message": "lost"}
        if not again:
            patch["error"] = JobError("WorkerLost", "gone")
        run = self.newest[job_id]
        if run is None or run == NO_RUN:
            return  # no run to lose (Lifecycle.lose looks first, as here)
        if self.write(job_id, "lose", Party.RECOVERY, patch, target=target, run=run,
                      hidden={"run": NO_RUN}):  # fmt: skip
            self.newest[job_id] = NO_RUN

    @rule(n=st.integers(0, JOBS - 1), finished=st.booleans())
    def the_reconciler_settles(self, n: int, finished: bool) -> None:
        job_id = self.ids[n]
        target = Status.FINISHED if finished else Status.FAILED
        patch: dict[str, Any] = {"message": "settled"}
        if not finished:
            patch["error"] = JobError("Lost", "gone")
        self.write(job_id, "settle", Party.RECONCILER, patch, target=target)

    @rule(n=st.integers(0, JOBS - 1))
    def the_reconciler_hands_back(self, n: int) -> None:
        self.write(self.ids[n], "hand_back", Party.RECONCILER, {"message": "handed back"})

    # -- what must hold after every step ---------------------------------------------------

    @invariant()
    def redis_holds_what_the_table_says(self) -> None:
        stored = self.run(self.store.get_many(self.ids))
        for job_id, data in zip(self.ids, stored, strict=True):
            if self.status[job_id] is None:
                assert data is None
                continue
            assert data is not None
            snapshot = decode(data)
            assert snapshot.status is self.status[job_id], (job_id, snapshot.status)
            assert snapshot.seq == self.seq[job_id], (job_id, snapshot.seq)


def test_every_transition_does_what_the_table_says(redis_url: str) -> None:
    LifecycleModel.redis_url = redis_url
    Applied.pairs = set()
    run = LifecycleModel.TestCase
    run.settings = settings(
        max_examples=150,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
    # Random sequences reach most rows (which ones varies); every row from every source
    # is walked by the test below.
    assert len({operation for operation, _ in Applied.pairs}) > 1, Applied.pairs


WRITE_ROWS = {
    "start": (Party.WORKER, {"percent": 0.0, "message": "started"}, None),
    "report": (Party.RUN, {"percent": 5.0, "message": "r"}, None),
    "pause": (Party.OPERATOR, {"message": "paused"}, None),
    "resume": (Party.OPERATOR, {"message": "resumed"}, None),
    "requeue": (Party.RUN, {"message": "again"}, None),
    "finish": (Party.RUN, {"result": 1}, None),
    "fail": (Party.RUN, {"error": JobError("E", "e")}, None),
    "cancel": (Party.OPERATOR, {"message": "canceled"}, None),
    "lose": (Party.RECOVERY, {"message": "lost"}, Status.QUEUED),
    "settle": (Party.RECONCILER, {"message": "settled"}, Status.FAILED),
    "hand_back": (Party.RECONCILER, {"message": "handed back"}, None),
}


@pytest.mark.parametrize("operation", sorted(WRITE_ROWS))
async def test_each_row_applies_from_each_source_and_from_nowhere_else(
    store: Store, operation: str
) -> None:
    by, patch, target = WRITE_ROWS[operation]
    step = move(operation, by, patch, target=target)
    for status in Status:
        job_id = f"row-{secrets.token_hex(6)}"
        await store.create(Snapshot.queued(job_id, "model.f"))
        if status is not Status.QUEUED:
            await store.write(job_id, {"status": status})  # set up: no guard
        try:
            data = await store.write(job_id, step.patch, only_from=step.sources)
        except (WrongStatus, JobIsFinal):
            assert status not in step.sources, (operation, status)
            continue
        assert status in step.sources, (operation, status)
        assert f'"status":"{step.patch["status"].value}"'.encode() in data


def test_only_the_parties_a_row_names_may_ask_for_it() -> None:
    for operation, row in TABLE.items():
        for party in Party:
            if party in row.by:
                if row.targets:  # (delete has none: the job is gone, nothing is written)
                    move(operation, party, target=min(row.targets))
                continue
            with pytest.raises(ValueError, match="may not"):
                move(operation, party)


def test_the_console_is_offered_what_the_table_allows() -> None:
    assert actions(Status.QUEUED) == ["cancel"]
    assert actions(Status.RUNNING) == ["cancel", "pause"]
    assert actions(Status.PAUSED) == ["cancel", "resume"]
    for ended in TERMINAL:
        assert actions(ended) == ["retry", "delete"]
    assert all(status in ACTIVE or status in TERMINAL for status in Status)
