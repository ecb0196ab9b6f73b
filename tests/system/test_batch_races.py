"""Batches raced by the people who hold them, against the real stack: a child retried on
its own before the batch's retry, a cancel racing a retry and an add. The counts stay the
children's statuses, and every request is answered as some order of them would be."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from jobhub.lifecycle.lifecycle import retry_id
from tests.system.test_batches import assert_exact, children, count, submit


async def ended(client: httpx.AsyncClient, batch_id: str) -> Any:
    async with asyncio.timeout(20):
        while (batch := (await client.get(f"/batches/{batch_id}")).json())["status"] == "active":
            await asyncio.sleep(0.05)
    return batch


async def test_a_child_retried_on_its_own_leaves_the_batchs_retry_working(
    client: httpx.AsyncClient,
) -> None:
    ids = [f"own-{secrets.token_hex(4)}-{i}" for i in range(3)]
    created = await submit(client, [count(1, 0.01, job_id=ids[0]),
                                    *(count(200, 0.05, job_id=j) for j in ids[1:])])  # fmt: skip
    batch_id = created["batch_id"]
    for job_id in ids[1:]:
        assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    assert (await ended(client, batch_id))["counts"]["canceled"] == 2
    alone = await client.post(f"/jobs/{ids[1]}/retry")  # a job of its own, outside the batch
    assert alone.status_code == 202, alone.text
    assert alone.json()["job_id"] == retry_id(ids[1])

    retried = await client.post(f"/batches/{batch_id}/retry")
    # The other canceled child runs again in the batch; the one retried already is left.
    assert retried.status_code == 202, retried.text
    assert retried.json()["job_ids"] == [retry_id(ids[2])]
    await client.post(f"/jobs/{retry_id(ids[2])}/cancel")
    final = await ended(client, batch_id)
    assert final["counts"] == {**final["counts"], "finished": 1, "canceled": 2}
    assert_exact(final, await children(client, batch_id))
    assert (await client.get(f"/jobs/{retry_id(ids[1])}")).json()["batch_id"] is None


async def test_a_retry_racing_a_cancel_is_answered_as_if_one_came_first(
    client: httpx.AsyncClient,
) -> None:
    # More children than a cancel handles per round trip: it takes a while, page by page.
    early = [f"early-{secrets.token_hex(4)}-{i}" for i in range(5)]
    jobs = [count(200, 0.05, job_id=j) for j in early] + [count(200, 0.05)] * 2495
    batch_id = (await submit(client, jobs))["batch_id"]
    try:
        for job_id in early:
            assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
        canceling = asyncio.create_task(client.post(f"/batches/{batch_id}/cancel"))
        async with asyncio.timeout(10):  # the cancel has sealed the batch: it is under way
            while not (await client.get(f"/batches/{batch_id}")).json()["sealed"]:
                await asyncio.sleep(0.005)
        retried = await client.post(f"/batches/{batch_id}/retry")
        assert (await canceling).status_code == 200
        statuses = {s["job_id"]: s["status"] for s in await children(client, batch_id)}
        if retried.status_code == 409:  # refused while the cancel went through the children
            assert retried.json()["error"]["type"] == "BatchConflict"
            assert set(statuses.values()) == {"canceled"}
        else:
            assert retried.status_code == 202, retried.text
            new = retried.json()["job_ids"]
            # Retry first: the cancel then canceled its children too. Cancel first: the
            # retry then ran every child the cancel had canceled. Never a part of either.
            assert all(statuses[j] == "canceled" for j in new) or len(new) == 2500, (
                len(new), sorted(statuses[j] for j in new)[:3]
            )  # fmt: skip
        assert (await client.post(f"/batches/{batch_id}/cancel")).status_code == 200
        final = await ended(client, batch_id)
        assert final["status"] == "canceled"
        assert_exact(final, await children(client, batch_id))
    finally:
        # Failed midway, it would leave 2,500 ten-second jobs on the worker every later
        # test shares.
        await client.post(f"/batches/{batch_id}/cancel")


async def test_children_added_racing_a_cancel_are_canceled_or_refused(
    client: httpx.AsyncClient,
) -> None:
    batch_id = (await submit(client, [count(200, 0.05)] * 1500, open=True))["batch_id"]

    async def after(delay: float, path: str, body: Any = None) -> httpx.Response:
        await asyncio.sleep(delay)
        return await client.post(f"/batches/{batch_id}/{path}", json=body)

    # Adds spread out in time around the cancel: some land before its seal, some after.
    adds = [after(0.01 * i, "jobs", {"jobs": [count(200, 0.05)] * 20}) for i in range(8)]
    canceled, *added = await asyncio.gather(after(0.03, "cancel"), *adds)
    assert canceled.status_code == 200
    statuses = {s["job_id"]: s["status"] for s in await children(client, batch_id)}
    for answer in added:
        # Before the cancel sealed the batch, and so canceled with the rest; or refused.
        assert answer.status_code in (202, 409), answer.text
        if answer.status_code == 202:
            assert {statuses[j] for j in answer.json()["job_ids"]} == {"canceled"}
        else:
            assert "sealed" in answer.json()["error"]["detail"]
    final = await ended(client, batch_id)
    assert final["status"] == "canceled" and final["sealed"] is True
    assert final["total"] == 1500 + 20 * sum(a.status_code == 202 for a in added)
    assert_exact(final, await children(client, batch_id))
