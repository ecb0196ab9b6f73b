"""A TCP proxy that cuts every connection a fixed time after it opened, as a load balancer
or proxy with an idle timeout cuts a long-lived event stream.

Runs its own asyncio loop in a thread, so sync tests (Playwright's) can use it::

    with CuttingProxy("127.0.0.1", app_port, cut_after=2.0) as proxy:
        page.goto(proxy.base_url + "/")   # every connection is cut after 2 s
        proxy.cuts                          # how many it has cut
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from jobhub.dev.server import free_port

__all__ = ["CuttingProxy"]


class CuttingProxy:
    def __init__(self, host: str, port: int, cut_after: float) -> None:
        self.target = (host, port)
        self.cut_after = cut_after
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.cuts = 0
        """Connections cut while both sides were still open."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        connections: set[asyncio.Task[None]] = set()

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.create_task(self._relay(reader, writer))
            connections.add(task)
            task.add_done_callback(connections.discard)

        server = await asyncio.start_server(accepted, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        pipes = [
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ]
        try:
            _, pending = await asyncio.wait(pipes, timeout=self.cut_after)
            if len(pending) == len(pipes):
                self.cuts += 1  # both ways still open when the time ran out: a cut
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for stream in (writer, upstream_writer):
                stream.close()
                with contextlib.suppress(OSError):
                    await stream.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
