"""Wait for a condition with a deadline, never for a fixed time.

A fixed ``sleep`` before an assert is either too short on a loaded machine (a flaky
failure) or too long everywhere else (a slow suite); polling until the condition holds is
neither. A sleep that remains in a test paces load or gives something the chance to happen
that must not, and says so in a comment.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], T | Awaitable[T]],
    limit: float = 10,
    what: str = "the condition",
    interval: float = 0.02,
) -> T:
    """Poll ``condition`` (a function or a coroutine function) until it returns something
    truthy, and return that; fail after ``limit`` seconds::

        await wait_until(lambda: store.get(job_id), what="the snapshot")
    """
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {limit} s waiting for {what}"
        await asyncio.sleep(interval)


def wait_until_sync(
    condition: Callable[[], T], limit: float = 10, what: str = "the condition"
) -> T:
    """``wait_until`` for tests that are not coroutines (subprocesses, the browser)."""
    deadline = time.monotonic() + limit
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {limit} s waiting for {what}"
        time.sleep(0.02)
    return value
