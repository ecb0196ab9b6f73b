"""The web side of the push path: one Redis pub/sub connection per process, many streams.

Each open stream holds a ``Watch``. The hub subscribes a job's channel when the first watch
of that job opens and unsubscribes it when the last one closes, so Redis sees one
connection per web process however many browsers look. A published snapshot becomes a
``Frame`` once and is offered to every watch of that job; a watch keeps only the newest
frame it has not delivered (snapshots are full state), so a slow reader skips
intermediate states instead of queueing them, and never holds up anyone else.

    watch, [frame] = await hub.watch(["job-1"])   # subscribed, then the snapshot read
    try:
        ...if frame is None: no such job; else: for update in await watch.next(): ...
    finally:
        watch.close()

Opening waits; it does not time out while Redis is up. A subscription Redis has not
confirmed yet is only busy, however long a burst makes it take: an open fails (with
``ServiceUnavailable``) only when the pub/sub connection is down and does not come back
within ``subscribe_timeout``. The snapshot reads of watches that open together go to
Redis in one round trip (``jobhub/store/reads.py``).

Redis restarts: the reader reconnects with backoff and subscribes every open channel again;
once Redis confirms, it re-reads the snapshots of those jobs (pub/sub drops what was
published while the connection was down) and offers them, and since a watch accepts only
a higher ``seq`` than it has seen, no stream ever repeats a snapshot or goes backwards. A
job whose snapshot is gone (Redis came back without its data) is offered as ``Vanished``,
so that its streams end instead of waiting for news that will never come. Output is not
re-read here: at the same confirmation each watch taking output is told to catch up from
Redis from its own position (``Watch.resubscribed``), so no entry is lost or repeated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgspec
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from jobhub.core import keys
from jobhub.core.exceptions import ServiceUnavailable
from jobhub.server.streaming.frames import Change, Entry, Frame
from jobhub.server.streaming.pubsub import Subscriber
from jobhub.server.streaming.ticks import Ticks
from jobhub.server.streaming.watch import TagWatch, Vanished, Watch
from jobhub.store.reads import Reads

__all__ = ["OUTPUT_PAGE", "Hub", "ReadChanges", "ReadOutputs"]

OUTPUT_PAGE = 500
"""Entries a stream catching up reads from Redis at a time."""

ReadOutputs = Callable[[Sequence[tuple[str, str]], int], Awaitable[list[list[tuple[str, bytes]]]]]
"""Reads, in one round trip, a page of each job's output after an entry id:
``[(job id, after)], limit -> [[(entry id, JSON)]]`` (``Store.output_many``)."""

ReadChanges = Callable[[int | None], Awaitable[list[Change]]]
"""Reads the snapshots of a tag's jobs changed after a version (None: those changed last),
with their versions, oldest change first (jobhub/server/streaming/tagged.py)."""

logger = logging.getLogger("jobhub.hub")


class _Channel:
    __slots__ = (
        "confirmed", "job_id", "name", "pending", "ready", "recent", "resync", "version",
        "watches",
    )  # fmt: skip

    def __init__(self, name: bytes, job_id: str | None, recent: ReadChanges | None = None) -> None:
        self.job_id = job_id  # None for a channel of many jobs, which has no one snapshot
        # For a tag's channel (whose messages carry a version): reads the snapshots of the
        # tag's jobs changed after a version, re-offered after a reconnect from the highest
        # version this process has had (``version``), so that what it missed is read.
        self.recent = recent
        self.version = 0
        # Live changes held back from a resubscribed tag channel until the re-read of what
        # was missed is offered: so its streams send versions in order, and a client's
        # Last-Event-ID never passes a change it has not had.
        self.pending: list[Change] | None = None
        self.name = name
        self.watches: set[Watch] = set()
        self.confirmed = False  # Redis confirmed the subscription on the live connection
        # Set when ``confirmed`` becomes true, or when the connection that was to confirm
        # it died (then replaced by a fresh one): what opening watches wait on.
        self.ready = asyncio.Event()
        self.resync = False


class Hub:
    """Fan-out of published snapshots to the watches of this process.

    ``read_many`` reads the snapshot JSON of several jobs in one round trip
    (``Store.get_many``); ``subscribe_timeout`` is how long an open waits for a pub/sub
    connection that is down to come back before it answers 503.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        read_many: Callable[[Sequence[str]], Awaitable[list[bytes | None]]],
        *,
        read_outputs: ReadOutputs | None = None,
        read_recent: Callable[[], Awaitable[list[bytes]]] | None = None,
        subscribe_timeout: float = 5.0,
        keepalive: float = 10.0,
    ) -> None:
        self._subscriber = Subscriber(
            connect,
            keepalive=keepalive,
            on_up=self._on_up,
            on_message=self._on_message,
            on_confirmed=self._on_confirmed,
            on_down=self._on_down,
        )
        self._read_many = read_many
        self._reads: Reads[Frame | None] = Reads(self._read_frames, self.until_up)
        self._read_outputs = read_outputs
        self._read_recent = read_recent
        self._outputs: Reads[list[tuple[str, bytes]]] = Reads(self._output_pages, self.until_up)
        self._subscribe_timeout = subscribe_timeout
        self._channels: dict[bytes, _Channel] = {}
        self._up = asyncio.Event()  # set while the pub/sub connection is up
        self._stale: list[_Channel] = []  # resubscribed channels whose snapshot is to re-read
        self._resync_task: asyncio.Task[None] | None = None
        self._closed = False
        self._ticks = Ticks()

    @property
    def subscribed_jobs(self) -> int:
        """Jobs with at least one open watch in this process."""
        return len(self._channels)

    async def start(self) -> None:
        self._subscriber.start()

    async def aclose(self) -> None:
        """Stop the reader and wake every watch so that its stream ends."""
        self._closed = True
        if self._resync_task is not None:
            self._resync_task.cancel()
            await asyncio.gather(self._resync_task, return_exceptions=True)
        await self._subscriber.aclose()
        await self._reads.aclose()
        await self._outputs.aclose()
        self._up.set()  # wakes opens waiting for a connection; they find the hub closed
        for channel in list(self._channels.values()):
            channel.ready.set()
            for watch in list(channel.watches):
                watch.close()

    async def until_up(self) -> None:
        """Return while the pub/sub connection is up, or once it is back; raise
        ``ServiceUnavailable`` if it stays down for ``subscribe_timeout``."""
        if not self._up.is_set():
            try:
                async with asyncio.timeout(self._subscribe_timeout):
                    await self._up.wait()
            except TimeoutError:
                raise ServiceUnavailable("Redis is unreachable; try again shortly") from None
        if self._closed:
            raise ServiceUnavailable("the server is shutting down")

    async def watch(
        self,
        job_ids: Iterable[str],
        seen: dict[str, int] | None = None,
        *,
        entries: dict[str, str] | None = None,
    ) -> tuple[Watch, list[Frame | None]]:
        """Open a watch on ``job_ids``: once every channel is subscribed, the jobs' current
        snapshots are read and offered to it. Returns the watch and those snapshots, in
        order (``None`` where there is no such job).

        ``seen`` maps a job to the highest ``seq`` the client already has: nothing at or
        below it is offered again. With ``entries`` (a job's output position the client
        holds, ``"0"`` for none) the watch takes output too: first what is stored after that
        position, then what is published.
        """
        ids = tuple(dict.fromkeys(job_ids))
        names = tuple(keys.job_channel(job_id).encode() for job_id in ids)
        watch = Watch(self._release, ids, seen or {}, names, entries=entries)
        watch = await self._open(watch, ids)
        # Subscribed first, read second: a snapshot published in between reaches the watch
        # through the subscription, and one published before is in what is read.
        try:
            frames = await self._reads.get_many(ids)
        except BaseException:
            watch.close()
            raise
        for frame in frames:
            if frame is not None:
                watch.offer(frame)
        return watch, frames

    async def output(self, job_id: str, after: str) -> list[tuple[str, bytes]]:
        """A page (``OUTPUT_PAGE`` entries at most) of the job's output after entry id
        ``after``, as ``(id, JSON)``: what a stream catching up reads. Pages asked for in the
        same moment share one round trip, and streams at the same place share one read."""
        [page] = await self._outputs.get_many([f"{job_id} {after}"])
        return page

    async def watch_all(self) -> Watch:
        """Open a watch on every job's snapshots (for dashboards), from now on."""
        name = keys.EVENTS.encode()
        return await self._open(Watch(self._release, (), {}, (name,), everything=True), (None,))

    async def watch_tag(
        self, tag: str, after: int | None, read: ReadChanges, *, on: str | None = None,
        kind: type[TagWatch] = TagWatch,
    ) -> Watch:  # fmt: skip
        """Open a watch on every job with ``tag`` (or a ``kind`` of watch on the channel
        ``on``: a batch's), those created later included. Once subscribed, ``read(after)``
        (the client's replay: the jobs changed after the version it holds, or those changed
        last) is offered to it; after a reconnect, what ``read`` reads after the newest."""
        name = (on or keys.tag_channel(tag)).encode()
        watch = await self._open(kind(self._release, name), (None,), read)
        try:
            changes = await read(after)
        except BaseException:
            watch.close()
            raise
        channel = self._channels.get(name)
        for change in changes:
            watch.offer(change)
            if channel is not None:
                channel.version = max(channel.version, change.version)
        return watch

    async def _open(
        self, watch: Watch, job_ids: tuple[str | None, ...], recent: ReadChanges | None = None
    ) -> Watch:
        if self._closed:
            raise ServiceUnavailable("the server is shutting down")
        channels = []
        for name, job_id in zip(watch.channels, job_ids, strict=True):
            channel = self._channels.get(name)
            if channel is None:
                channel = self._channels[name] = _Channel(name, job_id, recent)
                self._subscriber.subscribe(name)
            channel.watches.add(watch)
            channels.append(channel)
        try:
            for channel in channels:
                while not channel.confirmed:
                    ready = channel.ready
                    await self.until_up()
                    if not channel.confirmed and channel.ready is ready:
                        await ready.wait()
                if self._closed:
                    raise ServiceUnavailable("the server is shutting down")
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
                self._subscriber.unsubscribe(name)

    async def _output_pages(self, wanted: Sequence[str]) -> list[list[tuple[str, bytes]]]:
        if self._read_outputs is None:
            return [[] for _ in wanted]
        places = [(job_id, after) for job_id, _, after in (w.partition(" ") for w in wanted)]
        return await self._read_outputs(places, OUTPUT_PAGE)

    async def _read_frames(self, job_ids: Sequence[str]) -> list[Frame | None]:
        # Decoded here, once per job per round trip, however many watches opened on it.
        return [None if data is None else Frame(data) for data in await self._read_many(job_ids)]

    def _on_up(self) -> list[bytes]:
        self._up.set()
        return list(self._channels)

    def _on_down(self) -> None:
        """The connection died: every channel is to be subscribed again, and re-read once
        it is (it may have missed snapshots meanwhile); opens waiting on it look again."""
        self._up.clear()
        for channel in self._channels.values():
            if channel.confirmed:
                channel.confirmed = False
                channel.resync = True
            channel.ready.set()
            channel.ready = asyncio.Event()

    def _on_message(self, name: bytes, data: bytes) -> None:
        channel = self._channels.get(name)
        if channel is None or not channel.watches:
            return
        if data.startswith(b">"):
            # A job's output entry (``><stream id> <JSON>``, jobhub/store/lua/snapshots.py):
            # it shares the job's channel to keep its order with the snapshots.
            if channel.job_id is not None:
                entry = Entry.published(channel.job_id, data)
                for watch in channel.watches:
                    watch.offer(entry)
            return
        frame: Frame
        try:
            if channel.recent is not None:  # a tag's channel: ``<version> <JSON>``
                change = Change.published(data)
                if channel.pending is not None:
                    channel.pending.append(change)
                    return
                channel.version = max(channel.version, change.version)
                if self._ticks.hold(name, channel.watches, change):
                    return  # a batch's: offered with the rest of this turn's (ticks.py)
                frame = change
            else:
                frame = Frame(data)
        except (msgspec.DecodeError, ValueError):
            # Whatever a channel carries, the one reader of every stream must go on.
            logger.warning("skipped a message that is not a snapshot on %r", name)
            return
        for watch in channel.watches:
            watch.offer(frame)

    def _on_confirmed(self, name: bytes) -> None:
        channel = self._channels.get(name)
        if channel is None:
            return
        channel.confirmed = True
        channel.ready.set()
        if not channel.resync:
            return
        channel.resync = False
        if channel.recent is not None:
            channel.pending = []
        if channel.job_id is not None:
            # Output is a log, not state: what pub/sub dropped while the connection was
            # down is read from Redis by each stream from its own place. Done before any
            # message of the new subscription is handled, so that no live entry is queued
            # past the gap.
            for watch in channel.watches:
                watch.resubscribed(channel.job_id)
        self._stale.append(channel)
        if self._resync_task is None:
            self._resync_task = asyncio.create_task(self._resync(), name="jobhub-hub-resync")

    async def _resync_everything(self, channels: list[_Channel]) -> None:
        """A channel of many jobs has no one snapshot to re-read. The watches of every job's
        (dashboards) get the newest jobs' snapshots again, which covers what changed while
        the connection was down for all but the busiest of dashboards; a tag's get the
        snapshot of each job changed after the newest version this process had (all of them,
        from the tag's change log)."""
        again = []
        for channel in channels:
            frames: list[Frame] = []
            try:
                if channel.recent is not None:
                    frames += await channel.recent(channel.version or None)
                elif self._read_recent is not None:
                    frames += [Frame(data) for data in await self._read_recent()]
            except (RedisError, OSError, ServiceUnavailable) as exc:
                logger.info("could not resync the stream of %r (%s)", channel.name, exc)
                if channel.recent is not None:
                    again.append(channel)  # its live changes wait for what was missed
                    continue
            frames += channel.pending or []  # after what was missed: they came later
            channel.pending = None
            for frame in frames:
                if isinstance(frame, Change):
                    channel.version = max(channel.version, frame.version)
            for watch in list(channel.watches):
                for frame in frames:
                    watch.offer(frame)
        if again:
            await asyncio.sleep(1.0)  # Redis failed the read: try again shortly, not at once
            self._stale.extend(again)

    async def _resync(self) -> None:
        """Re-read the snapshots of resubscribed channels, all in one round trip."""
        try:
            while self._stale:
                everything = [c for c in self._stale if c.job_id is None and c.watches]
                stale = [(c, c.job_id) for c in self._stale if c.job_id is not None and c.watches]
                self._stale = []
                if everything:
                    await self._resync_everything(everything)
                if not stale:
                    continue
                try:
                    frames = await self._reads.get_many([job_id for _, job_id in stale])
                except ServiceUnavailable:
                    return  # down again: the next connection resyncs every channel
                for (channel, job_id), frame in zip(stale, frames, strict=True):
                    update = frame if frame is not None else Vanished(job_id)
                    for watch in list(channel.watches):
                        watch.offer(update)
        finally:
            self._stale = []
            self._resync_task = None
