"""Capacity: N web processes behind one port (uvicorn --workers N), M streams on one job.

For each process count and stream count, in one run on one Redis: start the web processes,
enqueue a job (no worker yet), open M streams on real sockets from several load-generator
processes (so that the generator is not what is measured) and read the queued snapshot on
each; measure the web processes' RSS per idle stream; then start one ARQ worker: the job
reports at a steady 20 updates/s. Per received snapshot, staleness = receive time - the
snapshot's ``updated_at``; also refusals (not 200), and the share of published updates
that reached the streams (the rest were conflated away: a stream that falls behind skips
to the newest snapshot).

    python bench/scale.py [--web-processes 1,2] [--streams 1000,3000] [--seconds 10]
                          [--clients N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fanout import Stream, Totals, enqueue, rss_kib, wait_serving  # noqa: E402

from jobhub.dev.processes import spawn, stop, worker_argv  # noqa: E402
from jobhub.dev.serve import APP, GRACEFUL_SHUTDOWN_SECONDS, HTTP_PROTOCOL  # noqa: E402
from jobhub.dev.server import RedisServer, free_port  # noqa: E402


def client(port: int, path: str, streams: int, pipe: Connection) -> None:
    """One load-generator process: opens ``streams`` streams, says how many opened, then
    reads them until each has the final snapshot, and sends back what it measured."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        totals = Totals()
        opened = [loop.create_future() for _ in range(streams)]
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda r=ready: Stream(path, totals, r), "127.0.0.1", port)
                for ready in opened
            ),
            return_exceptions=True,
        )
        protocols = [m[1] for m in made if not isinstance(m, BaseException)]
        totals.refused += len(made) - len(protocols)
        await asyncio.wait(opened, timeout=120)
        served = sum(1 for f in opened if f.done() and f.result())
        pipe.send(served)
        await asyncio.wait([p.done for p in protocols], timeout=600)
        pipe.send((totals.refused + streams - served - totals.refused, totals.staleness,
                   totals.updates, totals.finals))  # fmt: skip
        for made_one in made:
            if not isinstance(made_one, BaseException):
                made_one[0].close()

    uvloop.run(run())


def web_pids(master: int) -> list[int]:
    """The uvicorn master and the worker processes it forked."""
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                pids.append(int(entry.name))
    return pids


def scenario(
    redis_url: str, processes: int, streams: int, seconds: float, clients: int
) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    # uvicorn as ``jobhub serve --web-processes N`` runs it, with a listen backlog for the
    # whole burst of connects, and quiet (serve takes neither option).
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", APP, "--http", HTTP_PROTOCOL,
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(processes),
        "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_SECONDS),
        "--log-level", "warning", "--backlog", "8192",
    ]  # fmt: skip
    web = spawn(argv, env=env, cwd=str(ROOT))
    worker = None
    try:
        asyncio.run(wait_serving(port))
        time.sleep(1.0 + 0.5 * processes)  # every forked process listening
        steps = int(20 * seconds)
        job_id = asyncio.run(enqueue(redis_url, steps, 1 / 20))
        rss_before = sum(rss_kib(pid) for pid in web_pids(web.pid))
        pipes, procs = [], []
        for i in range(clients):
            share = streams // clients + (1 if i < streams % clients else 0)
            mine, theirs = multiprocessing.Pipe()
            proc = multiprocessing.Process(
                target=client, args=(port, f"/jobs/{job_id}/events", share, theirs)
            )
            proc.start()
            pipes.append(mine)
            procs.append(proc)
        began = time.monotonic()
        served = sum(p.recv() for p in pipes)
        open_s = time.monotonic() - began
        time.sleep(1)
        rss_after = sum(rss_kib(pid) for pid in web_pids(web.pid))
        worker = spawn(worker_argv(), env=env, cwd=str(ROOT), quiet=True)
        refused, stale, updates, finals = 0, [], 0, 0
        for pipe in pipes:
            r, s, u, f = pipe.recv()
            refused, updates, finals = refused + r, updates + u, finals + f
            stale += s
        for proc in procs:
            proc.join(10)
        stale.sort()
        published = streams * (steps + 2)
        return {
            "refused": streams - served,
            "open_s": open_s,
            "p50": statistics.median(stale) * 1000 if stale else float("nan"),
            "p99": stale[int(len(stale) * 0.99)] * 1000 if stale else float("nan"),
            "delivered": updates / published,
            "finals": finals,
            "rss_per_stream": (rss_after - rss_before) * 1024 / streams,
        }
    finally:
        stop([p for p in (worker, web) if p is not None])


HEADER = (
    "| web processes | streams | refused | all answered after | p50 staleness | p99 staleness"
    " | updates delivered | streams with final state | RSS per idle stream |"
)


def row(processes: int, streams: int, r: dict[str, float]) -> str:
    cells = [
        str(processes), str(streams), f"{r['refused']:.0f}", f"{r['open_s'] * 1000:.0f} ms",
        f"{r['p50']:.1f} ms", f"{r['p99']:.1f} ms", f"{r['delivered']:.1%}",
        f"{r['finals']:.0f}/{streams}", f"{r['rss_per_stream'] / 1024:.1f} KiB",
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def main(process_counts: list[int], stream_counts: list[int], seconds: float, clients: int) -> None:
    print(f"{os.cpu_count()} cores; {clients} load-generator processes; 20 updates/s")
    rows = []
    with RedisServer() as server:
        for streams in stream_counts:
            for processes in process_counts:
                r = scenario(server.url, processes, streams, seconds, clients)
                rows.append(row(processes, streams, r))
                print(rows[-1], flush=True)
    print()
    print(HEADER)
    print("|---" * 9 + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--web-processes", default="1,2")
    parser.add_argument("--streams", default="1000,3000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=max(1, (os.cpu_count() or 2) // 4))
    args = parser.parse_args()
    main(
        [int(n) for n in args.web_processes.split(",")],
        [int(n) for n in args.streams.split(",")],
        args.seconds,
        args.clients,
    )
