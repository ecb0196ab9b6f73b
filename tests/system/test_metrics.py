"""Prometheus metrics of the web app and of a worker move when jobs run."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.helpers import follow, start, wait_for
from tests.support.servers import WORKER_METRICS_PORT
from tests.support.waiting import wait_until


async def sample(client: httpx.AsyncClient, url: str, name: str, **labels: str) -> float:
    text = (await client.get(url)).text
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            if metric.name == name and all(metric.labels.get(k) == v for k, v in labels.items()):
                return float(metric.value)
    return 0.0


async def test_web_metrics_count_enqueued_jobs_streams_and_deliveries(
    client: httpx.AsyncClient,
) -> None:
    url = str(client.base_url) + "/metrics"
    enqueued = await sample(client, url, "jobhub_jobs_enqueued_total", function="demo.count")
    delivered = await sample(client, url, "jobhub_snapshots_delivered_total")
    snap = await start(client, "demo.count", steps=6, delay=0.2)
    stream = asyncio.create_task(follow(client, snap["job_id"]))
    await wait_until(
        lambda: sample(client, url, "jobhub_open_streams"), what="the stream to be counted"
    )
    assert await sample(client, url, "jobhub_open_streams") >= 1
    assert await sample(client, url, "jobhub_fanout_subscriptions") >= 1
    events = await stream
    assert (
        await sample(client, url, "jobhub_jobs_enqueued_total", function="demo.count")
        == enqueued + 1
    )
    assert await sample(client, url, "jobhub_snapshots_delivered_total") >= delivered + len(events)


async def test_worker_metrics_count_ended_jobs_and_write_latency(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics"
    labels = {"function": "demo.fail", "status": "failed"}
    before = await sample(client, url, "jobhub_jobs_ended_total", **labels)
    writes = await sample(client, url, "jobhub_snapshot_write_seconds_count")
    snap = await start(client, "demo.fail", after=1, delay=0.01)
    await wait_for(client, snap["job_id"])

    async def counted() -> bool:
        # The worker counts a job once it has ended, just after the final snapshot.
        return await sample(client, url, "jobhub_jobs_ended_total", **labels) > before

    await wait_until(counted, what="the ended job to be counted")
    assert await sample(client, url, "jobhub_jobs_ended_total", **labels) == before + 1
    assert await sample(client, url, "jobhub_snapshot_write_seconds_count") > writes
