"""The archive's test parts: a database of each kind, migrated, and the archiver process.

``archive_database`` makes a fresh database on the session's PostgreSQL (or a SQLite file)
so that each test starts from an empty archive; ``Archiver`` runs ``jobhub archive run``
as deployed, a subprocess that a test can SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import asyncpg

from tests.support.postgres import PostgresServer

__all__ = ["ArchiverProcess", "new_database"]

BIN = Path(sys.executable).parent


def new_database(kind: str, folder: Path, postgres: PostgresServer | None) -> str:
    """The URL of a new, empty database: a SQLite file in ``folder``, or a database of its
    own on ``postgres``."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'archive.db'}"
    assert postgres is not None
    name = "archive_" + secrets.token_hex(4)

    async def create() -> None:
        connection = await asyncpg.connect(
            host="127.0.0.1", port=postgres.port, user="postgres", database="postgres"
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return postgres.url.rsplit("/", 1)[0] + "/" + name


class ArchiverProcess:
    """``jobhub archive run`` as a subprocess, its output in ``log``."""

    def __init__(self, env: Mapping[str, str], *args: str, log: Path) -> None:
        self.log = log
        self._file = log.open("ab")
        argv = [str(BIN / "jobhub"), "archive", "run", *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.process = subprocess.Popen(argv, env=full_env, stdout=self._file, stderr=self._file)

    def wait_reading(self, limit: float = 60) -> None:
        """Until the archiver has connected and reads the feed: a test that stops the
        database must not catch it still starting (a loaded machine takes seconds)."""
        deadline = time.monotonic() + limit
        while b"reading the feed" not in self.log.read_bytes():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"the archiver did not start: {self.log}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no chance to finish a batch or acknowledge anything."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._file.close()
        return self.process.returncode

    def __enter__(self) -> ArchiverProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
