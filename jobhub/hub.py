"""The web side of the push path: one Redis pub/sub connection per process, many streams.

Each open stream holds a ``Watch``. The hub subscribes a job's channel when the first watch
of that job opens and unsubscribes it when the last one closes, so Redis sees one
connection per web process however many browsers look. A published snapshot is turned into
its SSE bytes once (a ``Frame``) and offered to every watch of that job; a watch keeps only
the newest frame it has not delivered (snapshots are full state), so a slow reader skips
intermediate states instead of queueing them, and never holds up anyone else.

    watch = await hub.watch(["job-1"])     # returns once Redis confirmed the subscription
    try:
        ...read the snapshot, offer it, then: for frame in await watch.next(): ...
    finally:
        watch.close()

Redis restarts: the reader reconnects with backoff and subscribes every open channel again;
once Redis confirms, it re-reads each job's snapshot (pub/sub drops what was published
while the connection was down) and offers it, and since a watch accepts only a higher
``seq`` than it has seen, no stream ever repeats a snapshot or goes backwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError
from sse_starlette import ServerSentEvent

from . import keys
from .exceptions import ServiceUnavailable
from .snapshot import decode_head

__all__ = ["Frame", "Hub", "Watch"]

logger = logging.getLogger("jobhub.hub")

_SEP = ServerSentEvent.DEFAULT_SEPARATOR.encode()

# Backoff between reconnect attempts: quick for a blip, at most a few seconds for an outage.
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0


class Frame:
    """One published snapshot, encoded as an SSE event once for all of its viewers."""

    __slots__ = ("_data_lines", "event", "job_id", "seq", "terminal")

    def __init__(self, data: bytes) -> None:
        head = decode_head(data)
        self.job_id = head.job_id
        self.seq = head.seq
        self.terminal = head.is_terminal
        # No event name: the browser's EventSource.onmessage receives unnamed events only.
        self.event = ServerSentEvent(data=data.decode(), id=str(head.seq)).encode()
        # What follows the id line: the data line(s) and the blank line that ends the event.
        self._data_lines = self.event[self.event.index(_SEP) + len(_SEP) :]

    def with_id(self, event_id: str) -> bytes:
        """The same event under another id (a many-job stream's cursor), without encoding
        the snapshot again."""
        return b"id: " + event_id.encode() + _SEP + self._data_lines


class Watch:
    """One stream's view of one or more jobs: the newest undelivered frame of each."""

    # A bare future rather than an asyncio.Event: an Event carries a deque of waiters, and
    # at thousands of streams every byte of a watch counts.
    __slots__ = (
        "_beat", "_closed", "_everything", "_hub", "_pending", "_seen", "_waiter",
        "channels", "job_ids", "last_sent",
    )  # fmt: skip

    def __init__(
        self,
        hub: Hub,
        job_ids: tuple[str, ...],
        seen: dict[str, int],
        channels: tuple[bytes, ...],
        everything: bool = False,
    ) -> None:
        self._hub = hub
        self.job_ids = job_ids
        self.channels = channels
        self._everything = everything
        self._seen = {job_id: seen.get(job_id, 0) for job_id in job_ids}
        self._pending: dict[str, Frame] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._beat = False
        self.last_sent = time.monotonic()

    def offer(self, frame: Frame) -> None:
        """Keep ``frame`` for delivery if it is newer than anything seen for its job."""
        # A watch of every job takes any job's first snapshot; others only their own jobs'.
        if frame.seq > self._seen.get(frame.job_id, 0 if self._everything else frame.seq):
            self._seen[frame.job_id] = frame.seq
            self._pending[frame.job_id] = frame
            self._wake()

    async def next(self) -> list[Frame]:
        """Wait for news; returns the newest frame of each job that changed.

        Returns ``[]`` when a heartbeat is due (the hub says so when the stream has sent
        nothing for a while) or once the watch is closed (``closed``: the hub shut down; the
        client will reconnect elsewhere).
        """
        if not self._pending and not self._closed and not self._beat:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._beat = False
        self.last_sent = time.monotonic()
        frames = list(self._pending.values())
        self._pending.clear()
        return frames

    def beat(self) -> None:
        """Make ``next`` return ``[]`` if it has nothing else: time for a heartbeat."""
        self._beat = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the subscriptions; safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._wake()
            self._hub._release(self)


class _Channel:
    __slots__ = ("job_id", "name", "resync", "subscribed", "watches")

    def __init__(self, name: bytes, job_id: str | None) -> None:
        self.job_id = job_id  # None for the channel of every job, which has no one snapshot
        self.name = name
        self.watches: set[Watch] = set()
        self.subscribed = asyncio.Event()
        self.resync = False


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


class Hub:
    """Fan-out of published snapshots to the watches of this process."""

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        read_snapshot: Callable[[str], Awaitable[bytes | None]],
        *,
        subscribe_timeout: float = 5.0,
        keepalive: float = 10.0,
    ) -> None:
        self._connect = connect
        self._read_snapshot = read_snapshot
        self._subscribe_timeout = subscribe_timeout
        self._keepalive = keepalive
        self._channels: dict[bytes, _Channel] = {}
        self._session: _Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._resyncs: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def subscribed_jobs(self) -> int:
        """Jobs with at least one open watch in this process."""
        return len(self._channels)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobhub-hub")

    async def aclose(self) -> None:
        """Stop the reader and wake every watch so that its stream ends."""
        self._closed = True
        tasks = [t for t in (self._task, *self._resyncs) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in list(self._channels.values()):
            for watch in list(channel.watches):
                watch.close()

    async def watch(self, job_ids: Iterable[str], seen: dict[str, int] | None = None) -> Watch:
        """Open a watch on ``job_ids``; returns once every channel is subscribed.

        ``seen`` maps a job to the highest ``seq`` the client already has: nothing at or
        below it is offered again.
        """
        ids = tuple(dict.fromkeys(job_ids))
        names = tuple(keys.job_channel(job_id).encode() for job_id in ids)
        return await self._open(Watch(self, ids, seen or {}, names), ids)

    async def watch_all(self) -> Watch:
        """Open a watch on every job's snapshots (for dashboards), from now on."""
        name = keys.EVENTS.encode()
        return await self._open(Watch(self, (), {}, (name,), everything=True), (None,))

    async def _open(self, watch: Watch, job_ids: tuple[str | None, ...]) -> Watch:
        if self._closed:
            raise ServiceUnavailable("the server is shutting down")
        channels = []
        for name, job_id in zip(watch.channels, job_ids, strict=True):
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = _Channel(name, job_id)
                if self._session is not None:
                    self._session.send("SUBSCRIBE", name)
            channel.watches.add(watch)
            channels.append(channel)
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                for channel in channels:
                    await channel.subscribed.wait()
        except TimeoutError:
            watch.close()
            raise ServiceUnavailable("Redis did not confirm the subscription in time") from None
        except BaseException:
            watch.close()
            raise
        return watch

    def _release(self, watch: Watch) -> None:
        for name in watch.channels:
            channel = self._channels.get(name)
            if channel is None:
                continue
            channel.watches.discard(watch)
            if not channel.watches:
                del self._channels[name]
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
                for channel in self._channels.values():
                    # Everything already open was subscribed on an earlier connection and
                    # may have missed snapshots while it was down.
                    channel.subscribed.clear()
                    channel.resync = True
                if self._channels:
                    session.send("SUBSCRIBE", *self._channels)
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
                if time.monotonic() - session.last_reply > 3 * self._keepalive:
                    logger.warning("pub/sub connection silent; dropping it")
                    await conn.disconnect(nowait=True)
                    return
                session.outbox.extend(conn.pack_command("PING"))
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
            channel = self._channels.get(reply[1])
            if channel is not None and channel.watches:
                frame = Frame(reply[2])
                for watch in channel.watches:
                    watch.offer(frame)
        elif kind == b"subscribe":
            name = reply[1]
            left = session.unconfirmed.get(name, 0) - 1
            if left > 0:
                session.unconfirmed[name] = left
                return
            session.unconfirmed.pop(name, None)
            channel = self._channels.get(name)
            if channel is not None:
                channel.subscribed.set()
                if channel.resync:
                    channel.resync = False
                    task = asyncio.create_task(self._resync(channel))
                    self._resyncs.add(task)
                    task.add_done_callback(self._resyncs.discard)

    async def _resync(self, channel: _Channel) -> None:
        if channel.job_id is None:
            return  # every job's channel: a dashboard reloads its list on its own
        try:
            data = await self._read_snapshot(channel.job_id)
        except (RedisError, OSError):
            return  # the connection is down again; the next reconnect resyncs
        if data is not None:
            frame = Frame(data)
            for watch in list(channel.watches):
                watch.offer(frame)
