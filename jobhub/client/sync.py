"""``Client``: the jobhub HTTP API for code without an event loop.

Each call runs the ``AsyncClient`` (``client.py`` beside this module) on a private loop
thread, so the two behave alike, reconnects and the fallback to polling included.

    with Client("http://localhost:8000") as hub:
        print(hub.wait(hub.submit("demo.count", steps=5).job_id).result)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

from jobhub.client.api import checked_url
from jobhub.client.batches import SyncBatching
from jobhub.client.client import AsyncClient
from jobhub.client.events import Gap, JobEvent, LogEntry
from jobhub.client.history import SyncHistory
from jobhub.client.tokens import SyncMinting
from jobhub.core.snapshot import Snapshot

__all__ = ["Client"]

T = TypeVar("T")


class Client(SyncMinting, SyncBatching, SyncHistory):
    """The same API for code without an event loop: each call runs on a private loop thread
    (where ``wait``'s ``on_log`` and ``on_output`` are called too).

    The thread is a daemon, and stops when the client is closed or garbage-collected: a
    client nobody closes must not keep the interpreter from exiting (a non-daemon thread
    is joined at exit, and its loop never ends on its own)."""

    def __init__(self, base_url: str, **options: Any) -> None:
        checked_url(base_url)  # before the loop thread starts: nothing to stop if it fails
        self._closing = False  # set as close() begins: from then on, calls are refused
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jobhub-client", daemon=True
        )
        self._thread.start()
        # Not a method of self: the finalizer must not keep the client alive.
        self._stop_loop = weakref.finalize(self, _stop_loop, self._loop, self._thread)
        try:
            self._client = self._call(_make_client(base_url, options))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs ``coroutine`` on the loop thread and returns its result here. Interrupted
        (Ctrl-C), it cancels the coroutine rather than leave it running behind the caller."""
        if threading.current_thread() is self._thread:
            # From ``on_log``/``on_output``: waiting here would stop the loop it waits on.
            coroutine.close()
            raise RuntimeError("a Client cannot be called from its own callbacks")
        if self._closing or not self._stop_loop.alive:
            coroutine.close()  # never to run: no "coroutine was never awaited" at exit
            raise RuntimeError("this Client is closed")
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except BaseException:
            coroutine.close()  # Ctrl-C before it was handed over: it never runs
            raise
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if not self._closing:
                raise
            # Closed from another thread while this call ran: its task was cancelled.
            raise RuntimeError("this Client is closed") from None
        except BaseException:
            future.cancel()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections and stops the loop thread; a second call does nothing.
        Another thread's call under way ends with ``RuntimeError("this Client is closed")``,
        as every later call does."""
        if self._stop_loop.alive and not self._closing:
            self._closing = True
            try:
                asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
            finally:
                self._stop_loop()

    @property
    def _async(self) -> AsyncClient:
        return self._client

    def submit(self, function: str, *args: Any, **kwargs: Any) -> Snapshot:
        return self._call(self._client.submit(function, *args, **kwargs))

    def get(self, job_id: str) -> Snapshot:
        return self._call(self._client.get(job_id))

    def cancel(self, job_id: str) -> Snapshot:
        return self._call(self._client.cancel(job_id))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_log: Callable[[LogEntry], object] | None = None,
        on_output: Callable[[Any], object] | None = None,
        on_gap: Callable[[Gap], object] | None = None,
    ) -> Snapshot:
        return self._call(
            self._client.wait(
                job_id, timeout=timeout, on_log=on_log, on_output=on_output, on_gap=on_gap
            )
        )

    @overload
    def events(
        self, job_id: str, *, timeout: float | None = ..., output: Literal[False] = ...
    ) -> Generator[Snapshot, None, None]: ...
    @overload
    def events(
        self, job_id: str, *, timeout: float | None = ..., output: bool
    ) -> Generator[JobEvent, None, None]: ...

    def events(
        self, job_id: str, *, timeout: float | None = None, output: bool = False
    ) -> Generator[JobEvent, None, None]:
        """Like ``AsyncClient.events``; stops (without error) when ``timeout`` passes."""
        iterator = self._client.events(job_id, output=output)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0)
                try:
                    event: JobEvent = self._call(_next(iterator, left))
                except (StopAsyncIteration, TimeoutError):
                    return
                yield event
        finally:
            # Left early (the caller broke off or raised): its stream is closed here, on the
            # loop, and not by the garbage collector once the loop is gone. Finalized by the
            # garbage collector on the loop thread, it cannot wait there; ``iterator`` is
            # garbage with it, and the loop's own finalizer closes it.
            closed = self._closing or not self._stop_loop.alive
            if not closed and threading.current_thread() is not self._thread:
                self._call(_aclose(iterator))


async def _next(iterator: AsyncGenerator[T, None], seconds: float | None) -> T:
    """``iterator``'s next item, within ``seconds``. Its first step must be taken on the loop
    thread: that is where the generator learns the loop's finalizer, which closes it on the
    loop once it is garbage (a step taken from the caller's thread left it none)."""
    return await asyncio.wait_for(anext(iterator), seconds)


async def _aclose(iterator: AsyncGenerator[Any, None]) -> None:
    """Closes ``iterator`` on the loop. One whose step a Ctrl-C is cancelling is still running
    (aclose would raise): the cancellation ends it, and closes what it holds, by itself."""
    with contextlib.suppress(RuntimeError):
        await iterator.aclose()


async def _make_client(base_url: str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(base_url, **options)


_SETTLE_SECONDS = 2.0


async def _settle() -> None:
    """Lets the loop finish what it still holds before it stops. httpx reads a response
    through generators it never closes itself; once a stream is closed, the garbage collector
    hands each of them to the loop to close as a task of its own. A loop stopped before those
    tasks run leaves them pending, and Python prints "Task was destroyed but it is pending!"
    at exit (``jobhub submit ... --follow | head -1`` did, two runs in five)."""
    await asyncio.sleep(0)  # the finalizer's scheduled callbacks create their tasks
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        _, pending = await asyncio.wait(others, timeout=_SETTLE_SECONDS / 2)
        # A call another thread still waits on (a poll asleep, say): cancelled, it closes
        # what it holds, and that thread hears that the client is closed.
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_SETTLE_SECONDS / 4)
    await asyncio.get_running_loop().shutdown_asyncgens()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Ends a ``Client``'s loop thread, then the loop. A finalizer runs wherever the garbage
    collector does, the loop's own thread too, which cannot wait for itself."""
    if thread is threading.current_thread():
        loop.call_soon(loop.stop)  # the thread ends after the callback now running
        return
    if thread.is_alive():
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(_settle(), loop).result(_SETTLE_SECONDS)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
