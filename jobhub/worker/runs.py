"""The runs under way in one worker process, and what all of them share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from jobhub.lifecycle.arq import DEFAULT_QUEUE
from jobhub.lifecycle.runs import Run
from jobhub.store.writes import WriteBatch

__all__ = ["RUNTIME", "RunEntry", "Runs", "WorkerRuntime"]

RUNTIME = "jobhub.runtime"
"""Key of the worker's ``WorkerRuntime`` in ARQ's ``ctx``, put there at worker startup."""


class RunEntry:
    """A run under way in this worker process: its task, and whether it was superseded."""

    __slots__ = ("deadline", "run", "superseded", "task")

    def __init__(self, run: Run, task: asyncio.Task[Any] | None) -> None:
        self.run = run
        self.task = task
        self.superseded = False
        self.deadline: asyncio.Timeout | None = None

    def suspend(self) -> float | None:
        """Stop the run's clock (it is paused); returns the time it had left."""
        deadline = self.deadline
        when = None if deadline is None or deadline.expired() else deadline.when()
        if deadline is None or when is None:
            return None
        deadline.reschedule(None)
        return max(0.0, when - asyncio.get_running_loop().time())

    def resume(self, left: float | None) -> None:
        """Start the run's clock again with the time it had left when it was suspended."""
        if self.deadline is not None and left is not None and not self.deadline.expired():
            self.deadline.reschedule(asyncio.get_running_loop().time() + left)

    def supersede(self) -> None:
        """Stop the run: the job was declared lost here and runs again elsewhere."""
        if not self.superseded and self.task is not None:
            self.superseded = True
            self.task.cancel()


class Runs:
    """The runs under way in this worker process, by job id."""

    def __init__(self) -> None:
        self._entries: dict[str, RunEntry] = {}

    def add(self, run: Run) -> RunEntry:
        entry = RunEntry(run, asyncio.current_task())
        self._entries[run.job_id] = entry
        return entry

    def remove(self, entry: RunEntry) -> None:
        if self._entries.get(entry.run.job_id) is entry:
            del self._entries[entry.run.job_id]

    def get(self, job_id: str) -> RunEntry | None:
        return self._entries.get(job_id)

    def job_ids(self) -> set[str]:
        return set(self._entries)


@dataclass(frozen=True, slots=True)
class WorkerRuntime:
    """What every run of a worker process shares, kept in ARQ's ``ctx`` at startup."""

    batch: WriteBatch
    worker_id: str
    runs: Runs
    queue_name: str = DEFAULT_QUEUE
