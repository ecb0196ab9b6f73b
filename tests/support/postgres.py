"""A real PostgreSQL for the archive's tests: Debian's ``initdb`` and ``pg_ctl`` on a free
port, in a folder of its own, stopped at exit.

PostgreSQL refuses to run as root, and the suite may run as root (CI containers): then the
server runs as ``nobody``, which owns its folder. Trust authentication on loopback only.

    with PostgresServer() as pg:
        url = pg.url            # postgresql+asyncpg://postgres@127.0.0.1:<port>/postgres
        pg.stop(); pg.start()   # a database that goes away and comes back
        pg.crash(); pg.start()  # one that dies, losing what it had not flushed
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from jobhub.dev.server import free_port

__all__ = ["PostgresServer", "postgres_bin"]


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL binaries (the newest), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


class PostgresServer:
    def __init__(self, *settings: str) -> None:
        """``settings`` (``name=value``) go to the server over the defaults below."""
        folder = postgres_bin()
        if folder is None:
            raise RuntimeError(
                "no PostgreSQL binaries: apt-get install postgresql (scripts/test does)"
            )
        self.bin = folder
        self.settings = settings
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="jobhub-pg-"))
        self.data = self.root / "data"
        self.user = "nobody" if os.geteuid() == 0 else None
        if self.user is not None:
            record = pwd.getpwnam(self.user)
            os.chown(self.root, record.pw_uid, record.pw_gid)
            self.root.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin / tool), *args]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")

    def start(self, timeout: float = 30.0) -> PostgresServer:
        # fsync off: a test database need not survive a power cut, and it is much faster.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        options += "".join(f" -c {setting}" for setting in self.settings)
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                  "-w", "-t", str(int(timeout)), "start")  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._accepts():
            assert time.monotonic() < deadline, "PostgreSQL did not come up"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """A fast shutdown: sessions are cut, as when the database host goes away."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def crash(self) -> None:
        """An immediate shutdown, as when the server dies: what was not flushed is lost."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
