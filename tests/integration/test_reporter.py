"""The worker side, with a real in-process ARQ worker in burst mode (as arq's own tests do)."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from typing import Any

import pytest
import redis.asyncio
from arq.connections import ArqRedis
from arq.worker import Retry, create_worker

from jobhub import JobContext, Settings, ThreadJobContext, job, worker_settings
from jobhub.core import keys
from jobhub.core.exceptions import InvalidProgress, JobIsFinal
from jobhub.core.snapshot import Snapshot, Status, decode
from jobhub.lifecycle.runs import Run
from jobhub.store.registry import Registry
from jobhub.store.store import Store
from jobhub.store.writes import WriteBatch

kept: list[JobContext] = []


@job("t.keeps_context")
async def keeps_context(ctx: JobContext) -> str:
    kept.append(ctx)
    await ctx.report(50, "half")
    return "done"


@job("t.bad_percent")
async def bad_percent(ctx: JobContext, percent: Any) -> None:
    await ctx.report(percent, "nope")


@job("t.unserializable")
async def unserializable(ctx: JobContext) -> object:
    return object()


@job("t.slow", timeout=0.3)
async def slow(ctx: JobContext) -> None:
    await ctx.report(10, "working")
    await asyncio.sleep(5)


@job("t.own_timeout")
async def own_timeout(ctx: JobContext) -> None:
    raise TimeoutError("the upstream API did not answer")


@job("t.flaky", backoff=0.05)
async def flaky(ctx: JobContext) -> str:
    await ctx.report(50, f"try {ctx.attempt}")
    if ctx.attempt < 3:
        raise Retry()
    return f"ok on try {ctx.attempt}"


@job("t.hopeless", max_tries=2)
async def hopeless(ctx: JobContext) -> None:
    try:
        raise ValueError("upstream down")
    except ValueError as exc:
        raise Retry(defer=0.05) from exc


@job("t.crunch")
def crunch(ctx: ThreadJobContext, steps: int, block: float = 0.1) -> int:
    for i in range(1, steps + 1):
        time.sleep(block)  # blocking work: the worker's loop must not wait for it
        ctx.report(100 * i / steps, f"block {i}")
    return steps


@job("t.quick")
async def quick(ctx: JobContext) -> str:
    for i in range(1, 4):
        await asyncio.sleep(0.02)
        await ctx.report(25.0 * i, f"quick {i}")
    return "quick done"


class Halt(BaseException):
    """Neither an Exception nor a cancellation."""


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no words")


@job("t.exits")
async def exits(ctx: JobContext, how: str) -> None:
    if how == "exit":
        raise SystemExit(3)
    if how == "halt":
        raise Halt("stop everything")
    if how == "unprintable":
        raise Unprintable()
    raise ValueError("x" * 20_000)


FUNCTIONS = [
    exits,
    keeps_context,
    bad_percent,
    unserializable,
    slow,
    own_timeout,
    flaky,
    hopeless,
    crunch,
    quick,
]


async def run_burst(
    redis_url: str, store: Store, jobs: list[tuple[str, dict[str, Any]]], **overrides: Any
) -> list[str]:
    """Enqueue ``jobs`` as the API does, run one burst worker over them, return their ids."""
    queue = "test:" + secrets.token_hex(4)
    settings = Settings(redis_url=redis_url, queue_name=queue, **overrides)
    arq = ArqRedis.from_url(redis_url)
    ids = []
    for function, kwargs in jobs:
        job_id = "r-" + secrets.token_hex(8)
        await store.create(Snapshot.queued(job_id, function))
        await arq.enqueue_job(function, _job_id=job_id, _queue_name=settings.queue_name, **kwargs)
        ids.append(job_id)
    await arq.aclose()
    await drain(settings)
    return ids


async def drain(settings: Settings) -> None:
    """One real ARQ worker, in burst mode: it runs what is queued, then stops."""
    worker = create_worker(
        worker_settings(FUNCTIONS, settings), burst=True, handle_signals=False, poll_delay=0.01
    )
    try:
        await worker.main()
    finally:
        await worker.close()


async def test_lifecycle_writes_started_then_finished(redis_url: str, store: Store) -> None:
    kept.clear()
    [job_id] = await run_burst(redis_url, store, [("t.keeps_context", {})])
    final = await store.read(job_id)
    assert final is not None
    assert final.status is Status.FINISHED
    assert final.result == "done"
    assert final.seq == 4  # queued, started, running 50 %, finished


async def test_stray_progress_after_the_end_is_rejected_not_stored(
    redis_url: str, store: Store, redis_client: redis.asyncio.Redis
) -> None:
    """A context kept past its job's end: Redis refuses its write while a worker can send
    it; once its worker has stopped, it is refused before it is sent, and opens no
    connection again on the worker's closed client (none is left for nobody to close)."""
    kept.clear()
    [job_id] = await run_burst(redis_url, store, [("t.keeps_context", {})])
    final = await store.read(job_id)
    [context] = kept
    clients = len(await redis_client.client_list())
    with pytest.raises(RuntimeError, match="its worker has stopped"):
        await context.report(60, "too late")
    assert len(await redis_client.client_list()) == clients
    live = Run(WriteBatch(store), job_id, attempt=1, worker_id="w")
    with pytest.raises(JobIsFinal):
        await live.report(60, "too late")
    assert await store.read(job_id) == final


@pytest.mark.parametrize("percent", [-1, 100.5, 1e9, float("nan"), float("inf"), "50", None, True])
async def test_percent_outside_0_to_100_fails_the_job_with_a_clear_error(
    redis_url: str, store: Store, percent: Any
) -> None:
    [job_id] = await run_burst(redis_url, store, [("t.bad_percent", {"percent": percent})])
    final = await store.read(job_id)
    assert final is not None
    assert final.status is Status.FAILED
    assert final.error is not None
    assert final.error.type == "InvalidProgress"
    assert "percent" in final.error.detail


async def test_report_validates_before_writing(store: Store) -> None:
    run = Run(WriteBatch(store), "never-written", attempt=1, worker_id="w")
    context = JobContext(run, {})
    with pytest.raises(InvalidProgress):
        await context.report(101)
    with pytest.raises(InvalidProgress):
        await context.report(10, message=5)  # type: ignore[arg-type]
    assert isinstance(InvalidProgress("x"), ValueError)


async def test_unserializable_result_fails_the_job_and_says_why(
    redis_url: str, store: Store
) -> None:
    [job_id] = await run_burst(redis_url, store, [("t.unserializable", {})])
    final = await store.read(job_id)
    assert final is not None
    assert final.status is Status.FAILED
    assert final.error is not None
    assert "not JSON-serializable" in final.error.detail


async def test_a_job_raising_anything_fails_and_the_worker_goes_on(
    redis_url: str, store: Store
) -> None:
    # A BaseException that escaped to ARQ would stop the burst worker here, before the last
    # job, and the jobs would stay `started`.
    jobs = [("t.exits", {"how": how}) for how in ("exit", "halt", "unprintable", "long")]
    ids = await run_burst(redis_url, store, [*jobs, ("t.quick", {})])
    finals = [await store.read(job_id) for job_id in ids]
    errors = [f.error for f in finals[:4] if f is not None and f.status is Status.FAILED]
    assert [e.type for e in errors if e is not None] == [
        "SystemExit", "Halt", "Unprintable", "ValueError"
    ]  # fmt: skip
    assert errors[0] is not None and errors[0].detail == "3"
    assert errors[2] is not None and "could not be read" in errors[2].detail
    assert errors[3] is not None and 8192 < len(errors[3].detail) < 8300
    assert errors[3].detail.endswith("(11808 more characters cut)")
    last = finals[4]
    assert last is not None and last.status is Status.FINISHED


async def test_worker_announces_its_functions(
    redis_url: str, store: Store, redis_client: redis.asyncio.Redis
) -> None:
    queue = "announce:" + secrets.token_hex(4)
    await drain(Settings(redis_url=redis_url, queue_name=queue))
    known = await Registry(redis_client, lost_after=5, queue_name=queue).live_functions()
    assert {"t.keeps_context", "t.bad_percent", "t.unserializable"} <= set(known)
    # Offered on that queue only: a worker on another queue never takes this one's jobs.
    elsewhere = Registry(redis_client, lost_after=5, queue_name=queue + ":other")
    assert not await elsewhere.is_offered("t.keeps_context")


async def test_job_enqueued_with_arq_directly_still_gets_snapshots(
    redis_url: str, store: Store
) -> None:
    settings = Settings(redis_url=redis_url, queue_name="test:" + secrets.token_hex(4))
    arq = ArqRedis.from_url(redis_url)
    job_id = "direct-" + secrets.token_hex(6)
    await arq.enqueue_job("t.keeps_context", _job_id=job_id, _queue_name=settings.queue_name)
    await arq.aclose()
    await drain(settings)
    final = await store.read(job_id)
    assert final is not None and final.status is Status.FINISHED


def test_duplicate_function_names_are_refused() -> None:
    with pytest.raises(ValueError, match="share a name"):
        worker_settings([keeps_context, keeps_context], Settings())


async def test_a_job_over_its_time_limit_is_failed_with_timeout_error(
    redis_url: str, store: Store
) -> None:
    [job_id] = await run_burst(redis_url, store, [("t.slow", {})])
    final = await store.read(job_id)
    assert final is not None
    assert final.status is Status.FAILED
    assert final.error is not None
    assert final.error.type == "TimeoutError"
    assert "limit of 0.3 s" in final.error.detail
    assert final.percent == 10  # where it was when time ran out


async def test_a_timeout_error_raised_by_the_job_keeps_its_own_message(
    redis_url: str, store: Store
) -> None:
    [job_id] = await run_burst(redis_url, store, [("t.own_timeout", {})])
    final = await store.read(job_id)
    assert final is not None and final.error is not None
    assert (final.error.type, final.error.detail) == (
        "TimeoutError",
        "the upstream API did not answer",
    )


async def test_retry_then_success(redis_url: str, store: Store) -> None:
    [job_id] = await run_burst(redis_url, store, [("t.flaky", {})])
    final = await store.read(job_id)
    assert final is not None
    assert (final.status, final.attempt, final.result) == (Status.FINISHED, 3, "ok on try 3")
    history = [decode(entry) for entry in await store.history(job_id)]
    waits = [s for s in history if s.status is Status.QUEUED and s.seq > 1]
    assert [s.attempt for s in waits] == [2, 3]
    assert waits[0].message.startswith("try 2 of 5 starts in 0.05 s")
    assert waits[1].message.startswith("try 3 of 5 starts in 0.1 s")  # the backoff doubles
    assert [s.attempt for s in history if s.status is Status.STARTED] == [1, 2, 3]


async def test_retry_until_the_last_try_then_failed(redis_url: str, store: Store) -> None:
    [job_id] = await run_burst(redis_url, store, [("t.hopeless", {})])
    final = await store.read(job_id)
    assert final is not None
    assert (final.status, final.attempt) == (Status.FAILED, 2)
    assert final.error is not None
    assert (final.error.type, final.error.detail) == ("ValueError", "upstream down")


async def test_blocking_function_reports_from_its_thread_while_async_jobs_go_on(
    redis_url: str, store: Store
) -> None:
    blocking, concurrent = await run_burst(
        redis_url, store, [("t.crunch", {"steps": 8}), ("t.quick", {})]
    )
    slow_final, quick_final = await store.read(blocking), await store.read(concurrent)
    assert slow_final is not None and quick_final is not None
    assert (slow_final.status, slow_final.result) == (Status.FINISHED, 8)
    assert (quick_final.status, quick_final.result) == (Status.FINISHED, "quick done")
    history = [decode(entry) for entry in await store.history(blocking)]
    reports = [s.message for s in history if s.status is Status.RUNNING]
    assert reports == [f"block {i}" for i in range(1, 9)]
    # The async job ran start to end while the blocking one was at work (0.8 s in all).
    started = next(s for s in history if s.status is Status.STARTED)
    assert started.updated_at < quick_final.updated_at < slow_final.updated_at


async def test_heartbeats_go_on_while_a_blocking_job_runs(redis_url: str, store: Store) -> None:
    # Watched from a thread of its own, so that a blocked event loop could not hide it. Each
    # block of the job's work (1 s) outlasts the alive key (0.8 s): had it blocked the loop,
    # the key would expire within every block. The margin under 0.8 s is for a busy
    # machine's scheduling, which stalls a loop for far less.
    client = redis.Redis.from_url(redis_url)
    before = set(client.smembers(keys.WORKERS))
    observed: list[bool] = []
    stop = threading.Event()

    def watch_heartbeat() -> None:
        while not stop.wait(0.05):
            for worker_id in set(client.smembers(keys.WORKERS)) - before:
                observed.append(bool(client.exists(keys.worker_alive(worker_id.decode()))))

    watcher = threading.Thread(target=watch_heartbeat)
    watcher.start()
    try:
        [job_id] = await run_burst(
            redis_url, store, [("t.crunch", {"steps": 3, "block": 1.0})],
            worker_heartbeat_seconds=0.05, worker_lost_after_seconds=0.8,
        )  # fmt: skip
    finally:
        stop.set()
        watcher.join()
        client.close()
    final = await store.read(job_id)
    assert final is not None and final.status is Status.FINISHED
    assert len(observed) > 10 and all(observed)


def test_arq_keeps_results_exactly_as_long_as_terminal_snapshots() -> None:
    settings = Settings(result_ttl_seconds=7200)
    assert worker_settings(FUNCTIONS, settings).keep_result == settings.result_ttl_seconds


def test_arq_keeps_no_result_of_a_run_the_snapshot_holds() -> None:
    # A run's terminal snapshot carries its result or error; ARQ's pickled copy of it was
    # read by nobody and cost the worker a pickle and a SET per job.
    functions = worker_settings(FUNCTIONS, Settings()).functions
    assert functions and all(f.keep_result_s == 0 for f in functions)
