"""A job's output written straight into the store, 1,000 entries a round trip as a run
writes them: for the tests of capped output and its gaps, over HTTP and in the browser."""

from __future__ import annotations

import secrets

import redis.asyncio

from jobhub.core.snapshot import Snapshot, Status
from jobhub.store.store import Store

PAD = "x" * 600
"""Each entry's padding: 15,000 entries then take ~11 MB, more than the socket buffers (the
sender's 4 MB at most, net.ipv4.tcp_wmem, and the reader's 256 KiB) hold for a reader that
stalls, so it must fall behind the cap."""


def ordinal(entry_id: str) -> int:
    return int(entry_id.partition("-")[2])


async def new_job(store: Store) -> str:
    job_id = "gaps-" + secrets.token_hex(6)
    await store.create(Snapshot.queued(job_id, "t.gaps"))
    # At work, as a run would have it: the reconciler settles a queued job no queue holds.
    await store.write(job_id, {"status": Status.RUNNING})
    return job_id


async def write(store: Store, job_id: str, first: int, last: int) -> list[str]:
    """Entries ``{"n": first}`` … ``{"n": last}`` appended as a job's run does, 1,000 per
    round trip; returns their ids."""
    ids: list[str] = []
    for start in range(first, last + 1, 1000):
        batch = [
            store.prepare_entry(job_id, {"kind": "output", "data": {"n": n, "pad": PAD},
                                         "at": "2026-01-01T00:00:00Z"}, run=None, owner=None)
            for n in range(start, min(start + 1000, last + 1))
        ]  # fmt: skip
        results = await store.write_many(batch)
        assert all(isinstance(r, bytes) for r in results)
        ids += [r.decode() for r in results if isinstance(r, bytes)]
    return ids


async def finish(store: Store, job_id: str) -> None:
    await store.write(job_id, {"status": Status.FINISHED, "percent": 100.0})


async def small_trimmed_job(redis_url: str) -> str:
    """A finished job that wrote 250 entries, of which the newest 100 are kept."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = Store(client, result_ttl_seconds=600, output_limit=100)
        job_id = await new_job(store)
        await write(store, job_id, 1, 250)
        await finish(store, job_id)
        return job_id
    finally:
        await client.aclose()
