"""Live output across a lost pub/sub connection: what was published while the web process's
subscription was down is read from Redis, by every stream from its own place, so no entry
is lost or repeated and the order holds. Against the real stack (uvicorn, an `arq` worker,
a private redis-server whose pub/sub clients the test disconnects)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import redis.asyncio
from httpx_sse import aconnect_sse

from jobhub.core import keys
from jobhub.dev.server import RedisServer
from jobhub.server.streaming.frames import Entry, Frame
from jobhub.server.streaming.watch import Update, Watch
from tests.support.helpers import start
from tests.support.servers import running_stack

Event = tuple[str, str, Any]  # (event name, id, data)


def output_watch() -> Watch:
    """A watch taking job ``j``'s output from the start, as a new stream opens one."""
    return Watch(lambda _: None, ("j",), {}, (b"c",), entries={"j": "0"})


def entry(n: int) -> Entry:
    return Entry("j", f"{n}-0", b'{"kind":"output","data":%d}' % n)


def snapshot(seq: int) -> Frame:
    return Frame(b'{"job_id":"j","status":"running","seq":%d}' % seq)


def names(updates: list[Update]) -> list[str]:
    """Entries by id, snapshots by seq, anything else by its kind."""
    return [name(update) for update in updates]


def name(update: Update) -> str:
    if isinstance(update, Entry):
        return update.id
    if isinstance(update, Frame):
        return f"seq {update.seq}"
    return type(update).__name__


async def pending(watch: Watch) -> list[Update]:
    """What the watch has to deliver now, without waiting for more."""
    watch.wake()
    return await watch.next()


async def test_a_resubscribed_watch_catches_up_past_the_gap_from_its_own_place() -> None:
    watch = output_watch()
    assert names(await watch.next()) == ["Behind"]
    assert watch.caught_up("j", "0-0")  # nothing stored yet: live from here
    watch.offer(entry(1))
    assert names(await watch.next()) == ["1-0"]
    watch.offer(entry(2))
    watch.offer(snapshot(1))
    # The connection drops (entries 3 and 4 are published meanwhile and lost), and the
    # job's channel is confirmed on a new one.
    watch.resubscribed("j")
    watch.offer(entry(5))  # live again, past the gap: read from Redis, not queued
    watch.offer(snapshot(2))
    # What came before the gap first, then the catch-up, then the newer snapshot.
    assert names(await watch.next()) == ["2-0", "Behind", "seq 2"]
    assert not watch.caught_up("j", "4-0")  # entry 5 was published since
    assert watch.caught_up("j", "5-0")
    watch.offer(entry(5))  # published once, read once: not again
    watch.offer(entry(6))
    assert names(await watch.next()) == ["6-0"]


async def test_a_catch_up_under_way_at_the_resubscription_reads_once_more() -> None:
    watch = output_watch()
    assert names(await watch.next()) == ["Behind"]
    # The stream reads the stored output up to entry 4, a read that may have run before the
    # job's channel was subscribed again; the confirmation comes while it is under way.
    watch.resubscribed("j")
    assert await pending(watch) == []  # no second Behind: the catch-up under way goes on
    assert not watch.caught_up("j", "4-0")
    assert watch.caught_up("j", "4-0")  # read again, after the confirmation: nothing newer


async def test_a_watch_without_output_is_not_told_to_catch_up() -> None:
    watch = Watch(lambda _: None, ("j",), {}, (b"c",))
    watch.resubscribed("j")
    assert await pending(watch) == []


async def follow(client: httpx.AsyncClient, path: str, into: list[Event]) -> None:
    async with aconnect_sse(client, "GET", path) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            into.append((sse.event, sse.id, json.loads(sse.data)))


async def until(condition: Callable[[], Awaitable[bool]], limit: float = 10) -> None:
    async with asyncio.timeout(limit):
        while not await condition():
            await asyncio.sleep(0.01)


def entry_ids(events: list[Event]) -> list[str]:
    """The output entries a stream delivered, by id (the part of its position after ``:``)."""
    return [event_id.rpartition(":")[2] for name, event_id, _ in events if name != "message"]


async def test_every_stream_gets_every_entry_once_across_pubsub_reconnects() -> None:
    with RedisServer() as server, running_stack(server.url) as stack:
        admin = redis.asyncio.Redis.from_url(server.url)
        try:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
                # A job that writes output steadily until it is canceled, so every cut below
                # lands while it writes, however slow the machine.
                job = await start(client, "demo.tokens", count=100_000, delay=0.001)
                job_id = job["job_id"]
                channel, output = keys.job_channel(job_id), keys.job_output(job_id)
                streams: list[list[Event]] = [[] for _ in range(10)]
                # Single-job streams and many-job ones: both follow the same watch contract.
                paths = [f"/jobs/{job_id}/events"] * 8 + [f"/events?jobs={job_id}"] * 2
                readers = [
                    asyncio.create_task(follow(client, path, into))
                    for path, into in zip(paths, streams, strict=True)
                ]

                async def subscribed() -> bool:
                    [(_, count)] = await admin.pubsub_numsub(channel)
                    return bool(count)

                async def grown() -> bool:
                    return int(await admin.xlen(output)) >= mark + 100

                async def live() -> bool:
                    return all(any(name == "output" for name, _, _ in s) for s in streams)

                await until(live)
                for cut in range(4):
                    await until(subscribed)
                    mark = int(await admin.xlen(output))
                    # Output flows on the live connection; then the cut, while the job goes
                    # on writing (during the reconnect, and after it).
                    await until(grown)
                    if cut < 3:
                        assert await admin.client_kill_filter(_type="pubsub") >= 1
                canceled = await client.post(f"/jobs/{job_id}/cancel")
                assert canceled.status_code == 200, canceled.text
                async with asyncio.timeout(20):
                    await asyncio.gather(*readers)
            # Writes after the final snapshot are refused: what is stored is all there was.
            stored = [entry_id.decode() for entry_id, _ in await admin.xrange(output)]
        finally:
            await admin.aclose()
    assert len(stored) > 400
    for events in streams:
        assert entry_ids(events) == stored
        chunks = [data["data"] for name, _, data in events if name == "output"]
        assert chunks == [f"w{i} " for i in range(len(chunks))]
        snapshots = [data for name, _, data in events if name == "message"]
        assert [s["seq"] for s in snapshots] == sorted({s["seq"] for s in snapshots})
        assert events[-1][0] == "message" and events[-1][2]["status"] == "canceled"
