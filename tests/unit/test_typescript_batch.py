"""The batch half of jobhub.d.ts and jobhub.d.mts, checked by the TypeScript compiler on the
documented uses (startBatch, watchBatch and its callbacks, cancelBatch, retryBatch)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_typescript import needs_tsc, tsc

CLASSIC = """\
/// <reference path="./jobhub.d.ts" />
async function main(): Promise<void> {
  const started = await jobhub.startBatch(
    [{ function: "demo.count", kwargs: { steps: 3 }, weight: 2 },
     { function: "demo.fail", jobId: "f-1" }],
    { batchId: "nightly", open: false, callbackUrl: "https://example.com/hook" },
  );
  const ids: string[] = started.job_ids;
  const controller = new AbortController();
  const final: jobhub.BatchSnapshot = await jobhub.watchBatch<{ steps: number }>(started.batch_id, {
    onUpdate: (batch) => console.log(batch.percent.toFixed(0), batch.counts.failed, batch.total),
    onJob: (child) => console.log(child.job_id, child.status, child.result?.steps),
    onConnection: (state: jobhub.Connection) => console.log(state === "polling"),
    signal: controller.signal, baseUrl: "/hub", token: "t", transport: "poll", maxAttempts: 3,
  });
  const status: jobhub.BatchStatus = final.status;
  console.log(ids.length, status, final.sealed, final.seq);
  const canceled: jobhub.BatchSnapshot = await jobhub.cancelBatch(started.batch_id, { token: "t" });
  const retried = await jobhub.retryBatch(started.batch_id);
  console.log(canceled.counts.canceled, retried.job_ids.length, retried.batch.total);
}
main().catch((error: jobhub.WatchBatchError) => console.log(error.name));
"""

MODULE = """\
import { startBatch, watchBatch, type BatchSnapshot, type WatchBatchOptions } from "./jobhub.mjs";
const { batch_id } = await startBatch([{ function: "demo.count" }]);
const options: WatchBatchOptions = { onUpdate: (b: BatchSnapshot) => b.counts.running };
const final = await watchBatch(batch_id, options);
console.log(final.status === "active", final.counts.canceled);
"""

WRONG = """\
/// <reference path="./jobhub.d.ts" />
jobhub.watchBatch("b", { onConnection: (state) => state === "open" });
jobhub.startBatch([{ fn: "demo.count" }]);
jobhub.watchBatch("b", { onUpdate: (batch) => batch.counts.done });
const done: number = (await jobhub.watchBatch("b")).status;
"""


@needs_tsc
def test_the_documented_batch_uses_type_check(tmp_path: Path) -> None:
    (tmp_path / "classic.ts").write_text(CLASSIC)
    (tmp_path / "module.mts").write_text(MODULE)
    result = tsc(tmp_path, "classic.ts", "module.mts")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_tsc
def test_wrong_batch_options_and_types_are_refused(tmp_path: Path) -> None:
    (tmp_path / "wrong.mts").write_text(WRONG)
    result = tsc(tmp_path, "wrong.mts")
    errors = [line for line in result.stdout.splitlines() if ": error TS" in line]
    assert len(errors) == 4, result.stdout
    assert "have no overlap" in result.stdout
    assert "'fn' does not exist" in result.stdout
    assert "Property 'done' does not exist" in result.stdout
    assert "wrong.mts(5,7): error TS2322" in result.stdout  # a status is no number
