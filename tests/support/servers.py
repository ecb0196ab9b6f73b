"""The two kinds of server the tests run, besides Redis.

- ``running_stack``: the real thing, as documented: the ``arq`` CLI worker and uvicorn as
  subprocesses (``jobhub.dev.server.Stack``), on a Redis given or a private one. The
  ``base_url`` and ``start_stack`` fixtures (tests/conftest.py) are built on it.
- ``ThreadedServer``: uvicorn serving an app built in the test process, from a thread, on
  real sockets, for tests that configure the app in Python or look inside its hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from arq.worker import Worker
from starlette.applications import Starlette

from jobhub.dev.server import RedisServer, Stack, free_port
from jobhub.server.streaming.hub import Hub

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: the worker's settings and the Procfile are found from there."""

WEBHOOK_SECRET = "test-webhook-secret"
# Chosen once per test session: the session stack's worker serves its metrics here.
WORKER_METRICS_PORT = free_port()


@contextlib.contextmanager
def running_stack(
    redis_url: str | None = None, *, env: Mapping[str, str] | None = None, **options: Any
) -> Iterator[Stack]:
    """A ``Stack`` run from the repository root with ``env`` over the test's environment.

    Without ``redis_url`` it gets a private redis-server, so that its workers take no job
    of the session's stack and no other worker takes its jobs. ``options`` go to ``Stack``
    (``workers``, ``web_processes``, ``worker_settings``, ``port``, ``quiet``)::

        with running_stack(env={"JOBHUB_MAX_JOBS": "1"}, workers=2) as stack:
            httpx.get(f"{stack.base_url}/health")
    """
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            redis_url = stack.enter_context(RedisServer()).url
        full_env = {**os.environ, **(env or {})}
        yield stack.enter_context(Stack(redis_url, cwd=str(ROOT), env=full_env, **options))


async def stop_worker(worker: Worker, running: asyncio.Task[None]) -> None:
    """Stop an in-process worker started with ``running = create_task(worker.main())``.

    ARQ's ``close()`` cancels the job tasks still running and re-raises their
    CancelledError, so once no new job can start, let those finish first.
    """
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    async with asyncio.timeout(10):
        while any(not task.done() for task in worker.tasks.values()):
            await asyncio.sleep(0.02)
    await worker.close()


class ThreadedServer:
    """uvicorn serving ``app`` from a thread of the test process, on real sockets.

    Tests reach the server's own event loop through ``call`` to look inside the hub.
    """

    def __init__(self, app: Starlette, log_level: str = "warning") -> None:
        self.app = app
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, port=self.port, log_level=log_level, timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())
        # What outlives the server (sse-starlette's per-loop shutdown watcher) ends here.
        leftovers = asyncio.all_tasks(self.loop)
        for task in leftovers:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.loop.close()

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the server's loop and return its result."""

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.services.hub
        return hub
