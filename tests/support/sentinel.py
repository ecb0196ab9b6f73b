"""A Redis Sentinel topology on loopback, from the same redis-server binary: a master, a
replica and three sentinels that fail over within a few seconds of the master dying."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from jobhub.dev.binary import find_redis_server
from jobhub.dev.processes import spawn, stop
from jobhub.dev.server import free_port

MASTER_NAME = "jobhub-test"


def _responds(port: int, command: bytes = b"PING\r\n") -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(command)
            return sock.recv(4096)
    except OSError:
        return b""


class SentinelTopology:
    def __init__(self, *, down_after_ms: int = 800) -> None:
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._down_after = down_after_ms
        self._dir = tempfile.TemporaryDirectory(prefix="jobhub-sentinel-")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def sentinels(self) -> str:
        """As ``JOBHUB_REDIS_SENTINELS`` takes them."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _redis(self, name: str, port: int, *extra: str) -> None:
        workdir = Path(self._dir.name, name)
        workdir.mkdir()
        argv = [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(workdir),
                "--loglevel", "warning", *extra]  # fmt: skip
        self.processes[name] = spawn(argv, quiet=True)

    def start(self, timeout: float = 15.0) -> SentinelTopology:
        self._redis("master", self.master_port)
        self._redis("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for i, port in enumerate(self.sentinel_ports):
            conf = Path(self._dir.name, f"sentinel-{i}.conf")
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self._dir.name}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self._down_after}\n"
                f"sentinel failover-timeout {MASTER_NAME} 4000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            argv = [find_redis_server(), str(conf), "--sentinel", "--loglevel", "warning"]
            self.processes[f"sentinel-{i}"] = spawn(argv, quiet=True)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the Sentinel topology did not come up")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        info = _responds(self.replica_port, b"INFO replication\r\n")
        if b"master_link_status:up" not in info:
            return False
        # Every sentinel knows the replica (and so can fail over to it).
        query = f"SENTINEL replicas {MASTER_NAME}\r\n".encode()
        return all(str(self.replica_port).encode() in _responds(p, query)
                   for p in self.sentinel_ports)  # fmt: skip

    def kill_master(self) -> None:
        self.processes["master"].kill()
        self.processes["master"].wait()

    def master_port_now(self) -> int | None:
        """The master's port as the first sentinel answering names it."""
        query = f"SENTINEL get-master-addr-by-name {MASTER_NAME}\r\n".encode()
        for port in self.sentinel_ports:
            reply = _responds(port, query)
            lines = reply.split(b"\r\n")
            if len(lines) >= 5 and lines[4].isdigit():
                return int(lines[4])
        return None

    def close(self) -> None:
        stop(list(self.processes.values()))
        self.processes = {}
        self._dir.cleanup()

    def __enter__(self) -> SentinelTopology:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
