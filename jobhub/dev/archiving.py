"""``jobhub dev``'s archiver: with ``JOBHUB_ARCHIVE_URL`` set (``./scripts/dev`` sets a
SQLite file in ``.jobhub/``), the schema is migrated and ``jobhub archive run`` runs beside
the stack, stopped with it. Without the setting there is nothing to do.

    with DevArchiver(settings, redis_url) as archiver:
        ...
        archiver.exited()     # None while it runs
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import TracebackType

from jobhub.core.exceptions import ConfigError
from jobhub.core.settings import Settings
from jobhub.dev.processes import spawn, stop

__all__ = ["DevArchiver"]


class DevArchiver:
    def __init__(self, settings: Settings, redis_url: str, *, quiet: bool = False) -> None:
        self.url = settings.archive_url
        self._env = {**os.environ, "REDIS_URL": redis_url}
        self._quiet = quiet
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> DevArchiver:
        if self.url is None:
            return self
        command = [sys.executable, "-m", "jobhub", "archive"]
        migrated = subprocess.run([*command, "migrate"], env=self._env, capture_output=True,
                                  text=True, timeout=120)  # fmt: skip
        if migrated.returncode != 0:
            raise ConfigError(f"the archive could not be migrated: {migrated.stderr.strip()}")
        self._process = spawn([*command, "run"], env=self._env, quiet=self._quiet)
        return self

    def exited(self) -> str | None:
        if self._process is None or self._process.poll() is None:
            return None
        return f"the archiver (jobhub archive run) exited with code {self._process.returncode}"

    def stop(self) -> None:
        if self._process is not None:
            stop([self._process])
            self._process = None

    def __enter__(self) -> DevArchiver:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
