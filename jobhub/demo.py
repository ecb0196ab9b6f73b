"""Demo jobs, used by the demo page, the README and the tests."""

from __future__ import annotations

import asyncio

from .reporter import JobContext, job

__all__ = ["FUNCTIONS", "count", "fail", "noop"]


@job("demo.count")
async def count(job: JobContext, steps: int = 10, delay: float = 0.5) -> dict[str, int]:
    """Sleep ``delay`` seconds ``steps`` times, reporting ``step i/steps`` after each."""
    if not (isinstance(steps, int) and steps <= 10_000 and 0 <= delay <= 60):
        raise ValueError("demo.count takes at most 10000 steps of at most 60 s")
    for i in range(1, steps + 1):
        await asyncio.sleep(delay)
        await job.report(100 * i / steps, f"step {i}/{steps}")
    return {"steps": steps}


@job("demo.fail")
async def fail(job: JobContext, after: int = 2, delay: float = 0.2) -> None:
    """Report ``after`` steps of progress, then raise ``ValueError``."""
    for i in range(1, after + 1):
        await asyncio.sleep(delay)
        await job.report(10 * i, f"step {i}, about to fail")
    raise ValueError(f"demo failure after {after} steps")


@job("demo.noop")
async def noop(job: JobContext) -> None:
    """Do nothing: the cost of a job is then jobhub's and ARQ's own."""


FUNCTIONS = [count, fail, noop]
