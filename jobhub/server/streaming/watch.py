"""One stream's view of the jobs it watches: what it has yet to deliver, in order.

The hub (``hub.py`` beside this module) offers a watch every published snapshot of its jobs as a
``Frame``, every entry of their output as an ``Entry``, and a ``Vanished`` for a job whose
snapshot is gone; the stream takes them, in the order they were published, with ``next``.

Two delivery contracts live side by side:

- **Snapshots are state**: a watch keeps only the newest undelivered one per job, so a slow
  reader skips intermediate states instead of queueing them, and it accepts only a higher
  ``seq`` than it has seen, so it never repeats a snapshot or goes backwards.
- **Output is a log**: every entry is delivered, once, in order. A watch queues the live
  entries of a reader that keeps up; one that falls ``BACKLOG`` entries behind (or that just
  opened, and first replays what is stored) drops them and is handed a ``Behind``: the
  stream then reads the entries from Redis from its own position until it has caught up
  (``caught_up``), so a slow reader costs the web process no memory and no other reader
  any time. After the hub's pub/sub connection was lost (pub/sub drops what is published
  while it is down), every watch taking output catches up the same way (``resubscribed``).

A snapshot is delivered where it was published among its job's entries (a log line written
before a report comes before that report's snapshot); when newer snapshots replace it, the
newest is delivered in the place of the last.

    watch, _ = await hub.watch(["job-1"], entries={"job-1": "0"})
    for update in await watch.next(): ...
    watch.close()
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from jobhub.core.positions import entry_key
from jobhub.server.streaming.frames import Entry, Frame

__all__ = ["BACKLOG", "Behind", "TagWatch", "Vanished", "Watch"]

_GONE = sys.maxsize  # the seq a watch holds of a vanished job: nothing later is newer

BACKLOG = 1000
"""Live entries a watch queues for a reader before it leaves the reader to catch up from
Redis."""


class Vanished:
    """A watched job that no longer exists: Redis came back without its snapshot."""

    __slots__ = ("job_id",)

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id


class Behind:
    """The stream is to read the job's output from Redis, from where it is, until
    ``Watch.caught_up`` says it has caught up with what was published."""

    __slots__ = ("job_id",)

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id


Update = Frame | Entry | Vanished | Behind


class Watch:
    """One stream's view of one or more jobs: see the module docstring."""

    # A bare future rather than an asyncio.Event: an Event carries a deque of waiters, and
    # at thousands of streams every byte of a watch counts.
    __slots__ = (
        "_behind", "_closed", "_entries", "_everything", "_latest", "_marked", "_positions",
        "_queue", "_release", "_seen", "_waiter", "_woken", "channels", "job_ids",
    )  # fmt: skip

    def __init__(
        self,
        release: Callable[[Watch], None],
        job_ids: tuple[str, ...],
        seen: dict[str, int],
        channels: tuple[bytes, ...],
        everything: bool = False,
        entries: dict[str, str] | None = None,
    ) -> None:
        self._release = release
        self.job_ids = job_ids
        self.channels = channels
        self._everything = everything
        # The seq delivered (or held by the client) of each watched job. A watch of every
        # job keeps none: one connection delivers a job's snapshots in seq order (the write
        # script publishes them in turn; Redis sends a subscriber its messages in order),
        # and such a watch reads no snapshot of its own that could race them. So what it
        # holds per job lasts only until the job's newest frame is delivered, and a
        # dashboard open for months holds no trace of the jobs that ended meanwhile.
        self._seen = {job_id: seen.get(job_id, 0) for job_id in job_ids}
        # The newest undelivered snapshot of each job, and the queue: entries, ``Behind``s,
        # and each job's id where its snapshot is to be delivered (``_marked``: jobs whose
        # place is after their last queued entry already).
        self._latest: dict[str, Frame | Vanished] = {}
        self._queue: list[str | Entry | Behind] = []
        self._marked: set[str] = set()
        self._entries = 0  # entries in the queue
        # Output: per job, the newest entry queued or left to catch up on (None: the
        # stream takes no output), and the jobs it is catching up on, each with whether a
        # read it made may predate the job's resubscription (then it has to read again).
        self._positions: dict[str, tuple[int, int]] | None = None
        self._behind: dict[str, bool] = {}
        if entries is not None:
            self._positions = {job_id: entry_key(entries.get(job_id, "0-0")) for job_id in job_ids}
            for job_id in job_ids:  # replay what is stored after the client's position first
                self._behind[job_id] = False
                self._queue.append(Behind(job_id))
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._woken = False

    def offer(self, update: Frame | Vanished | Entry) -> None:
        """Queue ``update`` for delivery if it is news: a newer snapshot than any seen for
        its job, or an entry past the stream's position in its job's output."""
        job_id = update.job_id
        if isinstance(update, Entry):
            self._offer_entry(update)
            return
        if not self._everything:
            seen = self._seen.get(job_id)
            if seen is None or seen == _GONE:
                return
            if isinstance(update, Vanished):
                self._seen[job_id] = _GONE
            elif update.seq > seen:
                self._seen[job_id] = update.seq
            else:
                return
        self._latest[job_id] = update
        if job_id not in self._marked:
            self._marked.add(job_id)
            self._queue.append(job_id)
        self._wake()

    def _offer_entry(self, entry: Entry) -> None:
        positions = self._positions
        job_id = entry.job_id
        if positions is None or job_id not in positions or entry.key <= positions[job_id]:
            return
        positions[job_id] = entry.key
        if job_id in self._behind:
            return  # the stream reads it from Redis, where it is stored
        if self._entries >= BACKLOG:
            # A reader this far behind catches up from Redis instead: drop what is queued of
            # the job's output, and hand the stream a Behind where it was.
            kept = [i for i in self._queue if not (isinstance(i, Entry) and i.job_id == job_id)]
            self._entries -= len(self._queue) - len(kept)
            self._queue = kept
            self._behind[job_id] = False
            self._queue.append(Behind(job_id))
        else:
            self._queue.append(entry)
            self._entries += 1
        self._marked.discard(job_id)  # a later snapshot goes after this entry
        self._wake()

    def caught_up(self, job_id: str, entry_id: str) -> bool:
        """The stream has read the job's output from Redis up to ``entry_id``: if nothing
        newer was published meanwhile, live entries are queued again from here. Returns
        whether it has caught up (else it reads on)."""
        positions = self._positions
        if positions is None:
            return True
        if self._behind.get(job_id):
            # The read that got the stream here may have run before the job's channel was
            # subscribed again, and missed what was published until then: read once more.
            self._behind[job_id] = False
            return False
        key = entry_key(entry_id)
        if positions[job_id] > key:
            return False
        positions[job_id] = key
        self._behind.pop(job_id, None)
        return True

    def resubscribed(self, job_id: str) -> None:
        """The hub's pub/sub connection was lost, and Redis has now confirmed the job's
        channel on a new one: what was published in between reached no watch, so a stream
        taking the job's output catches up from Redis, from its own position, as a slow
        reader does. Entries published from now on arrive live again; they are the ones
        ``caught_up`` waits for.

        Called at the confirmation, not at the loss: a catch-up ending before it would read
        Redis before the gap closed, and while the connection is down nothing arrives that
        could be queued past the gap.
        """
        positions = self._positions
        if positions is None or job_id not in positions:
            return
        if job_id in self._behind:
            # Already catching up, but perhaps from reads made before the confirmation.
            self._behind[job_id] = True
            return
        # After the entries already queued, which came before the gap.
        self._behind[job_id] = False
        self._queue.append(Behind(job_id))
        self._marked.discard(job_id)  # a later snapshot goes after the entries caught up on
        self._wake()

    async def next(self) -> list[Update]:
        """Wait for news; returns what there is to deliver, in order.

        Returns ``[]`` when woken with nothing to deliver (``wake``: a heartbeat is due) or
        once the watch is closed (``closed``: the hub shut down; the client will reconnect
        elsewhere).
        """
        if not self._queue and not self._closed and not self._woken:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._woken = False
        queue, self._queue = self._queue, []
        self._marked.clear()
        self._entries = 0
        if len(queue) == 1 and isinstance(queue[0], str):
            # The usual wake-up of a stream that keeps up: one job's newest snapshot. Worth
            # its own path: this runs once per delivered event (bench/fanout.py).
            return [self._latest.pop(queue[0])]
        last = {item: i for i, item in enumerate(queue) if isinstance(item, str)}
        updates: list[Update] = []
        for i, item in enumerate(queue):
            if not isinstance(item, str):
                updates.append(item)
            elif last[item] == i:
                updates.append(self._latest.pop(item))
        return updates

    def wake(self) -> None:
        """Make ``next`` return now, with ``[]`` if it has nothing else."""
        self._woken = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def held_jobs(self) -> int:
        """Jobs the watch keeps anything of (what it has seen or has yet to deliver)."""
        return len(self._seen.keys() | self._latest.keys())

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the subscriptions; safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._wake()
            self._release(self)


class TagWatch(Watch):
    """A watch of a tag's channel: every job with the tag, including jobs it learns of only
    when their snapshot arrives (created after the stream opened). Like a watch of named
    jobs it accepts only a higher ``seq`` than it has seen of each, so the snapshots read at
    the open (or after a reconnect) and the live ones can arrive in either order; it keeps
    one ``seq`` per job it has seen, for the stream's life."""

    __slots__ = ()

    def __init__(self, release: Callable[[Watch], None], channel: bytes) -> None:
        super().__init__(release, (), {}, (channel,))

    def offer(self, update: Frame | Vanished | Entry) -> None:
        if isinstance(update, Frame):
            self._seen.setdefault(update.job_id, 0)
            super().offer(update)
