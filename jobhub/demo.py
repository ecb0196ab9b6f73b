"""Demo jobs, used by the demo page, the README and the tests."""

from __future__ import annotations

import asyncio

from .reporter import JobContext, job

__all__ = ["FUNCTIONS", "count", "fail", "noop", "tokens"]


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


@job("demo.tokens")
async def tokens(job: JobContext, count: int = 50, delay: float = 0.05) -> str:
    """Type out ``count`` words as output chunks, ``"w0 "``, ``"w1 "``, …, like a language
    model's answer; a log line every 10 words; returns the whole text."""
    if not (isinstance(count, int) and 0 <= count <= 100_000 and 0 <= delay <= 60):
        raise ValueError("demo.tokens takes at most 100000 words of at most 60 s each")
    words = []
    for i in range(count):
        if delay:
            await asyncio.sleep(delay)
        words.append(f"w{i} ")
        await job.output(words[-1])
        if (i + 1) % 10 == 0:
            await job.log(f"{i + 1} words so far")
            await job.report(100 * (i + 1) / count, f"{i + 1}/{count} words")
    return "".join(words)


FUNCTIONS = [count, fail, noop, tokens]
