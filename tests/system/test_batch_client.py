"""Batches from Python (async and sync) and from the ``jobhub batch`` command, against the
real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jobhub import AsyncClient, BatchSnapshot, BatchStatus, Client
from jobhub.client.exits import EXIT_FAILED
from jobhub.core.snapshot import Snapshot, Status
from tests.support.readme import python_block


def count(steps: int) -> dict[str, object]:
    return {"function": "demo.count", "kwargs": {"steps": steps, "delay": 0.03}}


FAIL = {"function": "demo.fail", "kwargs": {"after": 1, "delay": 0.03}}


async def test_submit_and_wait_for_a_batch_with_live_updates(base_url: str) -> None:
    async with AsyncClient(base_url) as hub:
        submitted = await hub.submit_batch([count(3)] * 6 + [FAIL])
        assert len(submitted.job_ids) == 7 and submitted.batch.total == 7
        updates: list[BatchSnapshot] = []
        jobs: list[Snapshot] = []
        final = await hub.wait_batch(
            submitted.batch_id, timeout=30, on_update=updates.append, on_job=jobs.append
        )
        assert final.status is BatchStatus.FAILED
        assert (final.counts.finished, final.counts.failed) == (6, 1)
        assert updates[-1] == final
        assert [u.percent for u in updates] == sorted(u.percent for u in updates)
        assert {j.job_id for j in jobs if j.is_terminal} == set(submitted.job_ids)
        [failed] = await hub.batch_jobs(submitted.batch_id, status="failed")
        assert failed.status is Status.FAILED
        new = await hub.retry_batch(submitted.batch_id)
        assert len(new) == 1
        again = await hub.wait_batch(submitted.batch_id, timeout=30)
        assert again.status is BatchStatus.FAILED  # demo.fail fails again


def test_the_sync_client_cancels_a_batch(base_url: str) -> None:
    with Client(base_url) as hub:
        submitted = hub.submit_batch([count(100)] * 3)
        canceled = hub.cancel_batch(submitted.batch_id)
        assert canceled.sealed
        final = hub.wait_batch(submitted.batch_id, timeout=20)
        assert final.status is BatchStatus.CANCELED
        assert final.counts.canceled == 3 and hub.batch(submitted.batch_id) == final


def test_the_command_submits_follows_and_summarizes(base_url: str, tmp_path: Path) -> None:
    lines = [json.dumps(count(2)) for _ in range(4)] + [json.dumps(FAIL)]
    (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBHUB_")}
    done = subprocess.run(
        [sys.executable, "-m", "jobhub", "batch", "submit", str(tmp_path / "jobs.jsonl"),
         "--follow", "--url", base_url],
        capture_output=True, text=True, timeout=60, env=base,
    )  # fmt: skip
    assert done.returncode == EXIT_FAILED, done.stderr  # a child failed
    assert "4 finished · 1 failed" in done.stderr  # the bar's counts (a pipe: drawn once)
    first, *failures = done.stdout.splitlines()
    assert " failed  100%  5 jobs: 4 finished, 1 failed" in first
    assert len(failures) == 1 and "ValueError: demo failure after 1 steps" in failures[0]
    batch_id = first.split()[0]
    status = subprocess.run(
        [sys.executable, "-m", "jobhub", "batch", "status", batch_id, "--json", "--url", base_url],
        capture_output=True, text=True, timeout=60, env=base,
    )  # fmt: skip
    assert status.returncode == EXIT_FAILED
    assert json.loads(status.stdout)["counts"]["failed"] == 1
    retried = subprocess.run(
        [sys.executable, "-m", "jobhub", "batch", "retry", batch_id, "--json", "--url", base_url],
        capture_output=True, text=True, timeout=60, env=base,
    )  # fmt: skip
    assert retried.returncode == 0, retried.stderr
    answer = json.loads(retried.stdout)
    assert len(answer["job_ids"]) == 1 and answer["batch"]["batch_id"] == batch_id


def test_the_batch_snippet_runs_as_written(base_url: str, tmp_path: Path) -> None:
    script = tmp_path / "batch.py"
    script.write_text(python_block("batch.py").replace("http://127.0.0.1:8000", base_url))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    *progress, last = done.stdout.splitlines()
    assert progress[-1] == "100%"
    assert last.startswith("finished BatchCounts(") and "finished=20" in last
