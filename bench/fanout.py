"""Many SSE streams on one web process: jobhub's shared-subscriber fan-out vs the naive way.

For each N and each server (jobhub, and bench/naive_app.py: one pub/sub connection per
stream), in one run on one Redis:
  1. start the web process and enqueue a job (as POST /jobs does) with no worker yet;
  2. open N streams on real sockets all at once (every connect started in the same instant,
     as fast as the client can) and read, on each, the status line and the queued
     snapshot; count the refused ones (any answer but 200, or a connection dropped before
     one); measure the web process's RSS per idle stream and its TCP connections to Redis;
  3. start an ARQ worker (the `arq` CLI): the job reports at a steady 20 updates/s, or, for
     the burst, 100 updates as fast as the worker writes them;
  4. record, per received event, staleness = receive time - the snapshot's `updated_at`.
The load generator parses bytes (finds `"updated_at":"` and the status), not JSON, and runs
on uvloop, so that it measures the server.

    python bench/fanout.py [--streams 100,1000,3000] [--seconds 10] [--burst-streams 1000]
        [--rounds 1] [--kinds naive,jobhub] [--baseline NAME=PATH ...]

``--kinds bare,floor,jobhub`` measures the floor under jobhub's figures in the same run:
``floor`` is the same stack (uvicorn, Starlette, sse-starlette) doing nothing but the
fan-out, ``bare`` the fan-out as a plain ASGI app on uvicorn (bench/floor_app.py).

``--baseline before=/tmp/before`` with ``--kinds before,jobhub`` serves the same streams from
another commit's web process (``git archive <commit> | tar -x -C /tmp/before``), interleaved
with the current one round by round: the way to compare commits on a shared machine.

"delivered" counts, over all N streams (a refused one receives nothing), the updates that
arrived out of those published; a stream skips intermediate snapshots when it falls
behind (it holds only the newest), so under 100 % is expected when the process is CPU-bound.
"web CPU per delivered update" is the web process's CPU time while the job ran over the
updates delivered: what one more stream-update costs, steadier from run to run than the
staleness of a saturated process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import uvloop
from arq.connections import ArqRedis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobhub.core.snapshot import Snapshot  # noqa: E402
from jobhub.dev.processes import spawn, stop, worker_argv  # noqa: E402
from jobhub.dev.server import RedisServer, free_port, tcp_connections  # noqa: E402
from jobhub.store.store import Store  # noqa: E402

UPDATED = b'"updated_at":"'
STATUS = b'"status":"'


@dataclass
class Totals:
    refused: int = 0
    staleness: list[float] = field(default_factory=list)
    updates: int = 0
    finals: int = 0
    last_final_at: float = 0.0
    first_update_at: float = 0.0


class Stream(asyncio.Protocol):
    """One SSE client: sends the request, reads the status line, then scans what arrives
    for snapshots. ``opened`` resolves True at the queued snapshot, False if refused."""

    def __init__(self, path: str, totals: Totals, opened: asyncio.Future[bool]) -> None:
        self.path = path
        self.totals = totals
        self.opened = opened
        self.buffer = b""
        self.answered = False
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but they write.
        request = f"GET {self.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        transport.write(request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer, pos, totals = self.buffer + data, 0, self.totals
        if not self.answered:
            if len(buffer) < 13:
                self.buffer = buffer
                return
            self.answered = True
            if not buffer.startswith(b"HTTP/1.1 200 "):
                self.refuse()
                return
        while True:
            at = buffer.find(UPDATED, pos)
            if at < 0 or at + 41 > len(buffer):
                break
            status = buffer[buffer.find(STATUS, pos, at) + 10 : buffer.find(STATUS, pos, at) + 13]
            if status == b"que":
                if not self.opened.done():
                    self.opened.set_result(True)
            else:
                stamp = buffer[at + 14 : at + 40].decode()
                sent = datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
                totals.staleness.append(now - sent)
                totals.updates += 1
                if not totals.first_update_at:
                    totals.first_update_at = sent
                if status == b"fin":
                    totals.finals += 1
                    totals.last_final_at = now
                    if not self.done.done():
                        self.done.set_result(None)
            pos = at + 41
        self.buffer = buffer[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.refuse()  # dropped before it was served
        if not self.done.done():
            self.done.set_result(None)

    def refuse(self) -> None:
        if not self.opened.done():
            self.totals.refused += 1
            self.opened.set_result(False)
        if not self.done.done():
            self.done.set_result(None)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


BASELINES: dict[str, Path] = {}
"""``--baseline NAME=PATH``: web processes run from another checkout (a commit to compare
with), under NAME."""


def _uvicorn(root: Path, port: int) -> list[str]:
    """uvicorn as ``jobhub serve`` runs it (its HTTP protocol, graceful shutdown), with a
    listen backlog that holds the whole burst of connects, and quiet. An older checkout
    has its app where it had it then."""
    app, protocol = "jobhub.server.app:create_app", "jobhub.server.protocol:HttpProtocol"
    if not (root / "jobhub" / "server").is_dir():
        app, protocol = "jobhub.app:create_app", ""
    return [
        sys.executable, "-m", "uvicorn", "--factory", app, "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--backlog", "4096",
        "--timeout-graceful-shutdown", "3", *(("--http", protocol) if protocol else ()),
    ]  # fmt: skip


def start_web(kind: str, redis_url: str, port: int):  # type: ignore[no-untyped-def]
    env = {**os.environ, "REDIS_URL": redis_url}
    if kind in BASELINES:
        # Imported from its own checkout: the working directory comes first on the path.
        root = BASELINES[kind]
        return spawn(_uvicorn(root, port), env={**env, "PYTHONPATH": str(root)}, cwd=str(root))
    if kind == "jobhub":
        return spawn(_uvicorn(ROOT, port), env=env, cwd=str(ROOT))
    # bench/naive_app.py, or bench/floor_app.py: the stack alone (``floor``), and uvicorn
    # alone (``bare``).
    app = {"floor": "floor_app:create_app", "bare": "floor_app:create_bare_app"}.get(
        kind, "naive_app:create_app"
    )
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", app,
        "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--backlog", "4096", "--timeout-graceful-shutdown", "3",
    ]  # fmt: skip
    return spawn(argv, env=env, cwd=str(ROOT))


async def wait_serving(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("web process did not start")


async def enqueue(redis_url: str, steps: int, delay: float) -> str:
    """What POST /jobs does: the queued snapshot, then the ARQ job."""
    redis = ArqRedis.from_url(redis_url)
    job_id = secrets.token_urlsafe(16)
    await Store(redis, result_ttl_seconds=3600).create(Snapshot.queued(job_id, "demo.count"))
    await redis.enqueue_job("demo.count", _job_id=job_id, steps=steps, delay=delay)
    await redis.aclose()
    return job_id


async def scenario(
    kind: str, redis_url: str, streams: int, steps: int, delay: float
) -> dict[str, float]:
    port = free_port()
    web = start_web(kind, redis_url, port)
    worker = None
    connections: list[asyncio.Transport] = []
    try:
        await wait_serving(port)
        job_id = await enqueue(redis_url, steps, delay)
        rss_before = rss_kib(web.pid)
        totals = Totals()
        loop = asyncio.get_running_loop()
        path = f"/jobs/{job_id}/events"
        opened: list[asyncio.Future[bool]] = [loop.create_future() for _ in range(streams)]
        began = time.monotonic()
        # All at once: every connect is started before any is answered. The listen backlog
        # (4096, see start_web) holds them until the server accepts.
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda r=ready: Stream(path, totals, r), "127.0.0.1", port)
                for ready in opened
            ),
            return_exceptions=True,
        )
        protocols: list[Stream] = []
        for result in made:
            if isinstance(result, BaseException):
                totals.refused += 1  # not even connected
                continue
            connections.append(result[0])
            protocols.append(result[1])
        await asyncio.wait(opened, timeout=120)
        open_s = time.monotonic() - began
        for ready in opened:
            if not ready.done():  # not answered in two minutes: as good as refused
                totals.refused += 1
                ready.set_result(False)
        await asyncio.sleep(1)
        rss_per_stream = (rss_kib(web.pid) - rss_before) * 1024 / streams
        redis_port = urlsplit(redis_url).port or 6379
        redis_conns = tcp_connections(web.pid, redis_port)

        cpu_before = cpu_seconds(web.pid)
        worker = spawn(
            worker_argv(), env={**os.environ, "REDIS_URL": redis_url}, cwd=str(ROOT), quiet=True
        )
        await asyncio.wait([p.done for p in protocols], timeout=steps * delay + 60)
        cpu = cpu_seconds(web.pid) - cpu_before
        redis_conns = max(redis_conns, tcp_connections(web.pid, redis_port))
        published = streams * (steps + 2)  # started, each report, finished
        stale = sorted(totals.staleness) or [float("nan")]
        return {
            "refused": totals.refused,
            "open_s": open_s,
            "p50": statistics.median(stale) * 1000,
            "p99": stale[min(len(stale) - 1, int(len(stale) * 0.99))] * 1000,
            "delivered": totals.updates / published,
            "finals": totals.finals,
            "rss_per_stream": rss_per_stream,
            "redis_conns": redis_conns,
            "burst_s": totals.last_final_at - totals.first_update_at,
            "cpu_per_update": cpu / max(totals.updates, 1),
        }
    finally:
        for transport in connections:
            transport.close()
        stop([p for p in (worker, web) if p is not None])


HEADER = (
    "| scenario | server | refused (not 200) | all answered after | p50 staleness"
    " | p99 staleness | updates delivered | streams with final state | RSS per idle stream"
    " | Redis connections from web | web CPU per delivered update | burst: all final after |"
)


def row(label: str, kind: str, streams: int, r: dict[str, float]) -> str:
    burst = f"{r['burst_s'] * 1000:.0f} ms" if label.startswith("burst") else ""
    cells = [
        label, kind, f"{r['refused']:.0f}/{streams}", f"{r['open_s'] * 1000:.0f} ms",
        f"{r['p50']:.1f} ms", f"{r['p99']:.1f} ms", f"{r['delivered']:.1%}",
        f"{r['finals']:.0f}/{streams}", f"{r['rss_per_stream'] / 1024:.1f} KiB",
        f"{r['redis_conns']:.0f}", f"{r['cpu_per_update'] * 1e6:.1f} µs", burst,
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def main(
    stream_counts: list[int], seconds: float, burst_streams: int, kinds: list[str], rounds: int
) -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    rows = []
    with RedisServer() as server:
        # Rounds interleave the servers, so that a busy moment of a shared machine hits
        # each alike; compare the rounds side by side, not one figure alone.
        for _ in range(rounds):
            for streams in stream_counts:
                for kind in kinds:
                    steps = int(20 * seconds)
                    r = asyncio.run(scenario(kind, server.url, streams, steps, 1 / 20))
                    rows.append((f"{streams} streams, 20 updates/s", kind, streams, r))
                    print(row(*rows[-1]), flush=True)
        for kind in kinds if burst_streams else ():
            r = asyncio.run(scenario(kind, server.url, burst_streams, 100, 0))
            rows.append((f"burst of 100 updates, {burst_streams} streams", kind, burst_streams, r))
            print(row(*rows[-1]), flush=True)
    print()
    print(HEADER)
    print("|---" * 12 + "|")
    for line in rows:
        print(row(*line))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="100,1000,3000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--burst-streams", type=int, default=1000, help="0: no burst")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--kinds", default="naive,jobhub", help="naive, jobhub, floor, bare, baselines"
    )
    parser.add_argument(
        "--baseline", action="append", default=[], metavar="NAME=PATH",
        help="a web process from the checkout at PATH (git worktree add) under NAME in --kinds",
    )  # fmt: skip
    args = parser.parse_args()
    for spec in args.baseline:
        name, _, where = spec.partition("=")
        BASELINES[name] = Path(where).resolve()
    counts = [int(n) for n in args.streams.split(",")]
    kinds = args.kinds.split(",")
    main(counts, args.seconds, args.burst_streams, kinds, args.rounds)
