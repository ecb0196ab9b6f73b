"""Demo jobs, used by the demo page, the README and the tests.

Their arguments arrive as JSON, or as text from ``--kwarg steps=abc``: each is checked
before the job does anything, and one that is wrong fails the job with a message naming it,
which is also the job's last progress message (not the "started" it had until then).
"""

from __future__ import annotations

import asyncio
import reprlib
from typing import Any, NoReturn

from jobhub.worker.context import JobContext
from jobhub.worker.jobs import job

__all__ = ["FUNCTIONS", "count", "fail", "noop", "tokens"]


@job("demo.count")
async def count(job: JobContext, steps: int = 10, delay: float = 0.5) -> dict[str, int]:
    """Sleep ``delay`` seconds ``steps`` times, reporting ``step i/steps`` after each."""
    # Fewer than none is none: a negative count of steps finishes at once.
    await _whole(job, "steps", steps, 10_000, least=None)
    await _seconds(job, "delay", delay)
    for i in range(1, steps + 1):
        await asyncio.sleep(delay)
        await job.report(100 * i / steps, f"step {i}/{steps}")
    return {"steps": steps}


@job("demo.fail")
async def fail(job: JobContext, after: int = 2, delay: float = 0.2) -> None:
    """Report ``after`` steps of progress, then raise ``ValueError``."""
    await _whole(job, "after", after, 10_000)
    await _seconds(job, "delay", delay)
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
    await _whole(job, "count", count, 100_000)
    await _seconds(job, "delay", delay)
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


async def _whole(job: JobContext, name: str, value: Any, most: int, least: int | None = 0) -> None:
    """Refuses ``value`` unless it is an int from ``least`` (None: any) to ``most``."""
    span = f"up to {most}" if least is None else f"from {least} to {most}"
    what = f"{name} must be a whole number {span}"
    # bool is an int to Python, but `steps=true` is no count.
    if isinstance(value, bool) or not isinstance(value, int):
        await _refuse(job, TypeError, what, value)
    if value > most or (least is not None and value < least):
        await _refuse(job, ValueError, what, value)


async def _seconds(job: JobContext, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        await _refuse(job, TypeError, f"{name} must be a number of seconds from 0 to 60", value)
    if not 0 <= value <= 60:  # NaN fails this too
        await _refuse(job, ValueError, f"{name} must be a number of seconds from 0 to 60", value)


async def _refuse(job: JobContext, error: type[Exception], what: str, value: Any) -> NoReturn:
    # repr() of an int of thousands of digits raises (CPython's limit on int to str).
    big = isinstance(value, int) and value.bit_length() > 64
    shown = "a larger number" if big else reprlib.repr(value)
    message = f"{what}, got {shown}"
    # The failure itself leaves the progress message as it was ("started"): say why there
    # too, where the demo page and the CLI's bar show it.
    await job.report(0, message)
    raise error(message)
