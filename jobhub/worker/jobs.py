"""Declaring a job function: ``@job(name)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["JobCoroutine", "JobFunction", "job"]

JobCoroutine = Callable[..., Awaitable[Any]] | Callable[..., Any]
"""A job function: ``async def`` runs on the worker's loop, a plain ``def`` in a thread."""


@dataclass(frozen=True, slots=True)
class JobFunction:
    """A job function and how it is registered with ARQ."""

    name: str
    coroutine: JobCoroutine
    timeout: float | None = None
    max_tries: int | None = None
    backoff: float | None = None
    """Seconds before the first retry, doubling for each try after (when ``Retry`` gives no
    ``defer`` of its own)."""


def job(
    name: str,
    *,
    timeout: float | None = None,
    max_tries: int | None = None,
    backoff: float | None = None,
) -> Callable[[JobCoroutine], JobFunction]:
    """Declare a job function under the name clients enqueue it by.

    A job asks to be run again by raising ARQ's ``Retry``; it gets ``max_tries`` tries in
    all (the worker's ``JOBHUB_MAX_TRIES`` by default), ``backoff`` seconds apart, doubling.
    """

    def register(coroutine: JobCoroutine) -> JobFunction:
        return JobFunction(name, coroutine, timeout, max_tries, backoff)

    return register
