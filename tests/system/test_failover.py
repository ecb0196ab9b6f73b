"""Past one Redis: a real Sentinel topology (a master, a replica, three sentinels) on
loopback, the stack against it, and the master SIGKILLed mid-job; and, on a primary and a
stopped replica, that nothing is published before a replica has it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from typing import Any

import httpx
import pytest
import redis.asyncio
from httpx_sse import aconnect_sse

from jobhub.core import keys
from jobhub.core.snapshot import Snapshot, Status, decode_head
from jobhub.dev.server import RedisServer
from jobhub.store.store import Store
from tests.support.sentinel import MASTER_NAME, SentinelTopology
from tests.support.servers import running_stack

TERMINAL = {"finished", "failed", "canceled"}


async def collect(client: httpx.AsyncClient, job_id: str, into: list[dict[str, Any]]) -> None:
    # The stream may be cut by the failover: reconnect as EventSource does, with the id.
    last = None
    while not into or into[-1]["status"] not in TERMINAL:
        headers = {"Last-Event-ID": last} if last else {}
        try:
            async with aconnect_sse(
                client, "GET", f"/jobs/{job_id}/events", headers=headers
            ) as source:
                if source.response.status_code == 204:
                    return
                async for sse in source.aiter_sse():
                    # (httpx-sse yields a heartbeat comment as an empty "message".)
                    if sse.event == "message" and sse.data:
                        into.append(json.loads(sse.data))
                    last = sse.id or last
        except httpx.HTTPError:
            await asyncio.sleep(0.2)


async def test_a_failover_loses_no_update_repeats_no_seq_and_the_job_finishes() -> None:
    with SentinelTopology() as topology:
        env = {
            **os.environ,
            "JOBHUB_REDIS_SENTINELS": topology.sentinels,
            "JOBHUB_REDIS_SENTINEL_MASTER": MASTER_NAME,
            # With the old master gone the new one has no replica to wait for: keep the
            # waits short, so that the rest of the job runs quickly.
            "JOBHUB_REDIS_WAIT_TIMEOUT": "0.05",
        }
        master_url = f"redis://127.0.0.1:{topology.master_port}/0"
        with running_stack(master_url, env=env) as stack:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
                body = {"function": "demo.count", "kwargs": {"steps": 40, "delay": 0.1}}
                job_id = (await client.post("/jobs", json=body)).json()["job_id"]
                streams: list[list[dict[str, Any]]] = [[] for _ in range(30)]
                tasks = [asyncio.create_task(collect(client, job_id, s)) for s in streams]
                async with asyncio.timeout(10):
                    while not all(s and s[-1]["percent"] >= 20 for s in streams):
                        await asyncio.sleep(0.05)
                topology.kill_master()
                async with asyncio.timeout(40):
                    await asyncio.gather(*tasks)
                assert topology.master_port_now() == topology.replica_port
                # A job submitted after the failover runs on the new master.
                after = await client.post(
                    "/jobs", json={"function": "demo.count", "kwargs": {"steps": 2, "delay": 0}}
                )
                assert after.status_code == 202, after.text
                async with asyncio.timeout(20):
                    while (final := (await client.get(f"/jobs/{after.json()['job_id']}")).json())[
                        "status"
                    ] not in TERMINAL:
                        await asyncio.sleep(0.1)
                assert final["status"] == "finished"
    for stream in streams:
        seqs = [s["seq"] for s in stream]
        assert seqs == sorted(set(seqs)), seqs  # strictly increasing: never back, never twice
        assert stream[-1]["status"] == "finished" and stream[-1]["result"] == {"steps": 40}


@pytest.mark.parametrize("wait_replicas", [1, 0])
async def test_an_update_is_published_only_once_a_replica_has_it(wait_replicas: int) -> None:
    # What makes a failover safe: a reader can only see what a replica already holds, so
    # the replica a sentinel promotes never lacks a seq that was shown. With the wait off
    # (0, as without sentinels) the same update goes out at once: the check can tell.
    with RedisServer() as primary, RedisServer() as replica:
        source = redis.asyncio.Redis.from_url(primary.url)
        copy = redis.asyncio.Redis.from_url(replica.url)
        listener = source.pubsub()
        try:
            await copy.replicaof("127.0.0.1", primary.port)
            async with asyncio.timeout(10):
                while (await copy.info("replication")).get("master_link_status") != "up":
                    await asyncio.sleep(0.05)
            store = Store(
                source, result_ttl_seconds=60, wait_replicas=wait_replicas, wait_timeout_ms=10_000
            )
            job_id = "wait-" + secrets.token_hex(6)
            await store.create(Snapshot.queued(job_id, "demo.count"))
            await listener.subscribe(keys.job_channel(job_id))
            assert await listener.get_message(timeout=5) is not None  # subscribed
            stopped = int((await copy.info("server"))["process_id"])
            os.kill(stopped, signal.SIGSTOP)  # it receives nothing, and acknowledges nothing
            try:
                write = asyncio.create_task(store.write(job_id, {"status": Status.RUNNING}))
                early = await listener.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if wait_replicas:
                    assert early is None and not write.done()
                else:
                    assert early is not None and decode_head(early["data"]).seq == 2
                    return
            finally:
                os.kill(stopped, signal.SIGCONT)
            async with asyncio.timeout(5):
                await write
                message = None
                while message is None:
                    message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
            published = decode_head(message["data"]).seq
            held = await Store(copy, result_ttl_seconds=60).read(job_id)
            assert published == 2 and held is not None and held.seq == published
        finally:
            await listener.aclose()
            await source.aclose()
            await copy.aclose()
