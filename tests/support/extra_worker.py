"""A worker started with other settings: the demo functions and a few more.

Run as ``arq tests.support.extra_worker.WorkerSettings`` beside the repository's own
worker, it is a rolling deploy caught half-way: only this worker can run ``extra.double``.
The others serve tests of stale runs and deleted jobs; each ARQ run's end is counted in
``tests:arq-ended:<job id>``, so that a test can wait until ARQ is done with a run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq.worker import Retry

from jobhub import JobContext, Settings, job, worker_settings
from jobhub.dev import demo
from jobhub.worker.runner import after_job_end


@job("extra.double")
async def double(job: JobContext, n: int) -> int:
    await asyncio.sleep(0.05)
    await job.report(50, "half way")
    return 2 * n


@job("extra.retry_after_stall")
async def retry_after_stall(job: JobContext, key: str) -> dict[str, int]:
    """Counts its runs by attempt in ``<key>:runs:<attempt>``. Try 1 reports until it is
    stopped; try 2 asks to be retried once ``<key>:go`` is set; try 3 ends."""
    redis = job.ctx["redis"]
    await redis.incr(f"{key}:runs:{job.attempt}")
    await job.output(f"try {job.attempt} began")
    if job.attempt == 1:
        while True:
            await job.report(10, "working")
            await asyncio.sleep(0.05)
    if job.attempt == 2:
        await job.report(10, "waiting for the go")
        while not await redis.exists(f"{key}:go"):
            await asyncio.sleep(0.02)
        raise Retry()
    return {"attempt": job.attempt}


@job("extra.slow_finally")
async def slow_finally(job: JobContext, seconds: float) -> None:
    """Runs until cancelled, then takes ``seconds`` to clean up."""
    await job.report(1, "running")
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(seconds)


async def _counted_end(ctx: dict[str, Any]) -> None:
    await after_job_end(ctx)
    await ctx["redis"].incr(f"tests:arq-ended:{ctx['job_id']}")


_settings = worker_settings(
    [*demo.FUNCTIONS, double, retry_after_stall, slow_finally], Settings.from_env()
)
# ARQ reads a settings class's own __dict__ only, so a copy with the counting hook.
WorkerSettings = type(
    "WorkerSettings",
    (),
    {
        **{k: v for k, v in vars(_settings).items() if not k.startswith("__")},
        "after_job_end": _counted_end,
    },
)
