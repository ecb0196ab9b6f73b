"""The hub's one Redis pub/sub connection, kept up: reconnects, ordered sends, keepalive.

It knows channels only as names: what they carry and who watches them is the hub's
(``hub.py`` beside this module), told through four callbacks: the connection is up (the hub
answers the channels to subscribe again), a message came, Redis confirmed a subscription,
the connection is down.

Commands go out through one writer, in order, written straight to the connection rather
than through redis-py's ``PubSub``, so that a SUBSCRIBE and an UNSUBSCRIBE of one channel
keep their order and every confirmation is counted; a connection that hears nothing for
three keepalives is dropped, since commands going out do not mean anything comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from jobhub.store.connections import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS

__all__ = ["Subscriber"]

logger = logging.getLogger("jobhub.hub")

# Backoff between reconnect attempts, as for every command (one Redis policy: quick for a
# blip, at most a few seconds for an outage).
_BACKOFF_FIRST = BACKOFF_BASE_SECONDS
_BACKOFF_MAX = BACKOFF_CAP_SECONDS


class _Session:
    """One live connection. Commands go out in order through ``send``; when the connection
    dies the session dies with it, and with it any command it had not written yet."""

    def __init__(self, conn: AbstractConnection) -> None:
        self.conn = conn
        self.alive = True
        self.outbox: list[bytes] = []
        self.wakeup = asyncio.Event()
        # SUBSCRIBEs sent per channel and not yet confirmed: a channel counts as subscribed
        # only at the confirmation of the last one (an UNSUBSCRIBE may sit in between).
        self.unconfirmed: dict[bytes, int] = {}
        self.last_reply = time.monotonic()

    def send(self, *args: Any) -> None:
        if args[0] == "SUBSCRIBE":
            for name in args[1:]:
                self.unconfirmed[name] = self.unconfirmed.get(name, 0) + 1
        self.outbox.extend(self.conn.pack_command(*args))
        self.wakeup.set()


class Subscriber:
    """One pub/sub connection, reconnected with backoff until ``aclose``."""

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        *,
        keepalive: float,
        on_up: Callable[[], Iterable[bytes]],
        on_message: Callable[[bytes, bytes], None],
        on_confirmed: Callable[[bytes], None],
        on_down: Callable[[], None],
    ) -> None:
        self._connect = connect
        self._keepalive = keepalive
        self._on_up = on_up
        self._on_message = on_message
        self._on_confirmed = on_confirmed
        self._on_down = on_down
        self._session: _Session | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobhub-hub")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def subscribe(self, name: bytes) -> None:
        """Subscribe now if the connection is up; else it is, with every channel the hub
        holds, as soon as the connection is back (``on_up``)."""
        if self._session is not None:
            self._session.send("SUBSCRIBE", name)

    def unsubscribe(self, name: bytes) -> None:
        if self._session is not None:
            self._session.send("UNSUBSCRIBE", name)

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            conn = self._connect()
            session = _Session(conn)
            writer: asyncio.Task[None] | None = None
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                self._session = session
                names = list(self._on_up())
                if names:
                    session.send("SUBSCRIBE", *names)
                writer = asyncio.create_task(self._write(session), name="jobhub-hub-writer")
                backoff = _BACKOFF_FIRST
                while True:
                    reply = await conn.read_response(disconnect_on_error=False)
                    session.last_reply = time.monotonic()
                    self._on_reply(session, reply)
            except (RedisError, OSError) as exc:
                logger.warning("pub/sub connection lost (%s); reconnecting in %.2fs", exc, backoff)
            finally:
                session.alive = False
                if self._session is session:
                    self._session = None
                    self._on_down()
                if writer is not None:
                    writer.cancel()
                await conn.disconnect(nowait=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _write(self, session: _Session) -> None:
        """Write queued commands in order; PING when idle so a dead link is noticed."""
        conn = session.conn
        while session.alive:
            try:
                async with asyncio.timeout(self._keepalive):
                    await session.wakeup.wait()
            except TimeoutError:
                session.outbox.extend(conn.pack_command("PING"))
            # Checked on every round, not only when idle: commands going out do not mean
            # that anything comes back (Redis stopped, a link silently dropped), and an
            # idle connection hears a PONG every ``keepalive`` seconds.
            if time.monotonic() - session.last_reply > 3 * self._keepalive:
                logger.warning("pub/sub connection silent; dropping it")
                await conn.disconnect(nowait=True)
                return
            session.wakeup.clear()
            batch, session.outbox = session.outbox, []
            # Checked right before the send: redis-py would silently reconnect a closed
            # connection, which must not happen behind the reader's back.
            if batch and session.alive and conn.is_connected:
                try:
                    await conn.send_packed_command(batch, check_health=False)
                except (RedisError, OSError):
                    return  # the reader sees the same failure and reconnects

    def _on_reply(self, session: _Session, reply: Any) -> None:
        kind = reply[0]
        if kind == b"message":
            self._on_message(reply[1], reply[2])
        elif kind == b"subscribe":
            name = reply[1]
            left = session.unconfirmed.get(name, 0) - 1
            if left > 0:
                session.unconfirmed[name] = left
                return
            session.unconfirmed.pop(name, None)
            self._on_confirmed(name)
