"""A worker started with other settings: the demo functions and one more.

Run as ``arq tests.extra_worker.WorkerSettings`` beside the repository's own worker, it is
a rolling deploy caught half-way: only this worker can run ``extra.double``.
"""

from __future__ import annotations

import asyncio

from jobhub import JobContext, Settings, demo, job, worker_settings


@job("extra.double")
async def double(job: JobContext, n: int) -> int:
    await asyncio.sleep(0.05)
    await job.report(50, "half way")
    return 2 * n


WorkerSettings = worker_settings([*demo.FUNCTIONS, double], Settings.from_env())
