"""Child processes that cannot outlive their parent: for the dev stack and the tests."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

__all__ = ["spawn", "stop", "web_argv", "worker_argv"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the kernel sends SIGTERM to the child when its parent dies, even by SIGKILL,
    # so a killed dev command or test run leaves no redis-server or worker behind.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_argv(settings: str = "worker_settings.WorkerSettings") -> list[str]:
    """The ARQ CLI on ``settings`` (``module.Name``), imported from the working directory."""
    return [sys.executable, "-m", "arq", settings]


def web_argv(host: str, port: int, *extra: str) -> list[str]:
    """``jobhub serve``: the web app as production runs it (see jobhub/dev/serve.py), its
    request-head limit and graceful shutdown included, so the dev stack and the tests run
    the same server a deployment does."""
    return [sys.executable, "-m", "jobhub", "serve", "--host", host, "--port", str(port), *extra]


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    quiet: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child that is terminated when this process dies."""
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        list(argv),
        env=dict(os.environ if env is None else env),
        cwd=cwd,
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        # Out of the terminal's process group: Ctrl-C reaches only the parent, which stops
        # its children in order (the web app and workers before the Redis they use).
        start_new_session=True,
    )


def stop(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 5.0) -> None:
    """SIGTERM each process, then SIGKILL whatever is still running after ``timeout``."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
