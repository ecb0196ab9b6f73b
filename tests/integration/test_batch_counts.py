"""A batch's counts against a real Redis, driven through the lifecycle table by every party
at random: after each step they equal the children's statuses counted one by one, sum to
``total``, and the percent never goes down between retries."""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from typing import Any

import msgspec
import pytest
import redis.asyncio

from jobhub.core.batch import BatchStatus, decode_batch
from jobhub.core.exceptions import JobIsFinal, WrongStatus
from jobhub.core.snapshot import Status, decode
from jobhub.lifecycle.batches import BatchLifecycle, ChildSpec
from jobhub.lifecycle.lifecycle import Lifecycle
from jobhub.lifecycle.table import TABLE
from jobhub.lifecycle.transitions import move
from jobhub.store.batches import BatchStore
from jobhub.store.store import Store

# The rows a child's run, recovery, the reconciler and an operator take (create, retry and
# delete are the batch's own, below), each with its party and targets.
ROWS = [(name, next(iter(row.by)), sorted(row.targets)) for name, row in TABLE.items()
        if name not in ("create", "retry", "delete")]  # fmt: skip


async def check(store: Store, batches: BatchStore, batch_id: str) -> Any:
    batch = decode_batch(await batches.get(batch_id) or b"")
    children = [job_id for _, job_id in await batches.children(batch_id, after=0, limit=1000)]
    statuses = Counter(decode(d).status.value for d in await store.get_many(children) if d)
    assert msgspec.structs.asdict(batch.counts) == {s.value: statuses[s.value] for s in Status}
    assert sum(statuses.values()) == batch.total == len(children)
    return batch


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_counts_equal_the_childrens_statuses_after_every_step(
    redis_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    client = redis.asyncio.Redis.from_url(redis_url)
    store = Store(client, result_ttl_seconds=600)
    batches = BatchStore(client, result_ttl_seconds=600)
    lifecycle = BatchLifecycle(Lifecycle(client, store, queue_name=f"q{seed}"), batches)
    specs = [ChildSpec("demo.count", weight=rng.randint(1, 5)) for _ in range(30)]
    batch_id, _, _ = await lifecycle.submit(specs, open_=True)
    percent = 0.0
    for step in range(600):
        if step == 300:
            await lifecycle.seal(batch_id)
        name, party, targets = rng.choice(ROWS)
        patch = {"percent": float(rng.randint(0, 100))} if name == "report" else {}
        planned = move(name, party, patch, target=rng.choice(targets))
        children = [j for _, j in await batches.children(batch_id, after=0, limit=1000)]
        with contextlib.suppress(WrongStatus, JobIsFinal):  # the table's guard, in the step
            await store.write(rng.choice(children), planned.patch, only_from=planned.sources)
        batch = await check(store, batches, batch_id)
        assert batch.percent >= percent
        percent = batch.percent
        if batch.status is not BatchStatus.ACTIVE:
            assert step >= 300 and batch.counts.queued + batch.counts.running == 0
            if batch.counts.failed or batch.counts.canceled:
                new, _ = await lifecycle.retry(batch_id)  # they take their places
                assert new
                batch = await check(store, batches, batch_id)
                assert batch.status is BatchStatus.ACTIVE
                percent = batch.percent
            else:
                break
    await client.aclose()
