"""The floor under bench/fanout.py's web CPU per delivered event: the socket write itself.

N TCP connections on loopback, a reader process draining them; the writer (uvloop, as
uvicorn runs) writes one SSE frame of the size jobhub sends to each, 20 times a second:
first from one loop over the transports, then from a task per stream woken by a future,
as a server with a task per stream must. Prints the writer's CPU per write. On loopback
the write also does the receiving side's TCP work, as it does for the benchmark's web
process.

    python bench/socket_floor.py [--streams 1000,3000] [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time

import uvloop

FRAME = b"id: 12\ndata: " + b"x" * 330 + b"\n\n"  # a snapshot's event is ~350 bytes


def drain(port: int, streams: int) -> None:
    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(streams):
            await loop.create_connection(Reader, "127.0.0.1", port)
        await asyncio.sleep(3600)

    uvloop.run(main())


async def measure(streams: int, rounds: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    connected = asyncio.Event()

    class Writer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transports.append(transport)
            if len(transports) == streams:
                connected.set()

    server = await loop.create_server(Writer, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    reader = multiprocessing.Process(target=drain, args=(port, streams), daemon=True)
    reader.start()
    try:
        await connected.wait()
        began = time.process_time()
        for _ in range(rounds):
            for transport in transports:
                transport.write(FRAME)  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
        plain = (time.process_time() - began) / (streams * rounds)

        waiters: list[asyncio.Future[None]] = [loop.create_future() for _ in transports]

        async def stream(i: int, transport: asyncio.BaseTransport) -> None:
            while True:
                await waiters[i]
                waiters[i] = loop.create_future()
                transport.write(FRAME)  # type: ignore[attr-defined]

        tasks = [asyncio.create_task(stream(i, t)) for i, t in enumerate(transports)]
        await asyncio.sleep(0.1)
        began = time.process_time()
        for _ in range(rounds):
            for waiter in list(waiters):
                if not waiter.done():  # its task has not yet written the last round's
                    waiter.set_result(None)
            await asyncio.sleep(0.05)
        tasked = (time.process_time() - began) / (streams * rounds)
        for task in tasks:
            task.cancel()
        return plain, tasked
    finally:
        reader.kill()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="1000,3000")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    print("| streams | CPU per write, one loop | CPU per event, a task per stream |")
    print("|---|---|---|")
    for n in (int(s) for s in args.streams.split(",")):
        plain, tasked = uvloop.run(measure(n, args.rounds))
        print(f"| {n} | {plain * 1e6:.1f} µs | {tasked * 1e6:.1f} µs |")
