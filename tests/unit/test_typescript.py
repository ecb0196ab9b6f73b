"""jobhub.d.ts and jobhub.d.mts: checked by the TypeScript compiler on the documented uses,
and tied to the Python snapshot model so that a new field cannot go untyped.

tsc is the repository's own, at package-lock.json's version (scripts/test runs ``npm ci``).
Without node_modules these tests are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jobhub.core.snapshot import Snapshot, Status
from tests.support.react import NODE_MODULES

STATIC = Path(__file__).resolve().parents[2] / "jobhub" / "static"
TSC = NODE_MODULES / ".bin" / "tsc"

needs_tsc = pytest.mark.skipif(
    not TSC.exists() and os.environ.get("CI") != "true",
    reason="no node_modules: run `npm ci` (scripts/test does) to type-check jobhub.d.ts",
)

CLASSIC = """\
/// <reference path="./jobhub.d.ts" />
async function main(): Promise<void> {
  jobhub.baseUrl = "https://jobs.example.com/hub";
  const job = await jobhub.start("demo.count", { kwargs: { steps: 5 }, jobId: "mine-1" });
  const status: jobhub.Status = job.status;
  const final = await jobhub.watch<{ steps: number }>(job.job_id, {
    onUpdate: (s) => console.log(s.status, s.percent.toFixed(0), s.message),
    timeout: 60_000, maxAttempts: 10, transport: "poll", token: "t", baseUrl: "/hub",
  });
  const steps: number | undefined = final.result?.steps;
  console.log(status, steps, jobhub.TERMINAL.finished, final.error?.detail, final.seq);
  let text = "";
  await jobhub.watch<string, string>("tokens-1", {
    onOutput: (chunk, entry) => { text += chunk.toUpperCase() + entry.id + entry.at; },
    onLog: (entry: jobhub.LogEntry) => console.log(entry.level, entry.message, entry.id),
    onGap: (gap: jobhub.Gap) => console.warn(gap.missed.toFixed(0), gap.from, gap.to),
  });
}
main().catch((error: jobhub.WatchError) => console.log(error.name, error.snapshot?.seq));
"""

MODULE = """\
import jobhub, { start, watch, TERMINAL, type Snapshot } from "./jobhub.mjs";
import type { Gap, LogEntry, OutputEntry, WatchOptions } from "./jobhub.mjs";
jobhub.baseUrl = "https://jobs.example.com";
const job: Snapshot = await start("demo.count", { args: [5], apiKey: "key" });
const final = await watch(job.job_id, { onUpdate: (s: Snapshot) => s.seq });
console.log(TERMINAL.canceled, final.updated_at, final.attempt);
const rows: OutputEntry<{ n: number }>[] = [];
const options: WatchOptions<unknown, { n: number }> = {
  onOutput: (row, entry) => { rows.push(entry); console.log(row.n + 1); },
  onLog: (entry: LogEntry) => entry.level === "error" && console.error(entry.message),
  onGap: (gap: Gap) => { console.warn(`missed ${gap.missed}`); },
};
await watch(job.job_id, options);
"""

WRONG = """\
/// <reference path="./jobhub.d.ts" />
jobhub.watch("x", { transport: "sse" });
jobhub.start("demo.count", { kwarg: {} });
const percent: string = (await jobhub.start("demo.count")).percent;
jobhub.watch("x", { onLog: (entry) => entry.data });
jobhub.watch("x", { onGap: (gap) => gap.missed.toUpperCase() });
"""


def tsc(directory: Path, *files: str) -> subprocess.CompletedProcess[str]:
    if not TSC.exists():
        pytest.fail("CI=true but no node_modules/.bin/tsc: `npm ci` did not run")
    for name in ("jobhub.d.ts", "jobhub.d.mts", "jobhub.mjs"):
        shutil.copy(STATIC / name, directory / name)
    options = ["--noEmit", "--strict", "--target", "es2022", "--module", "nodenext"]
    return subprocess.run(
        [str(TSC), *options, "--lib", "es2022,dom", "--types", "", *files],
        cwd=directory, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@needs_tsc
def test_the_documented_uses_type_check(tmp_path: Path) -> None:
    (tmp_path / "classic.ts").write_text(CLASSIC)
    (tmp_path / "module.mts").write_text(MODULE)
    result = tsc(tmp_path, "classic.ts", "module.mts")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_tsc
def test_wrong_options_and_types_are_refused(tmp_path: Path) -> None:
    (tmp_path / "wrong.mts").write_text(WRONG)
    result = tsc(tmp_path, "wrong.mts")
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if ": error TS" in line]
    assert len(errors) == 5, result.stdout
    assert "'\"sse\"' is not assignable" in result.stdout
    assert "'kwarg' does not exist" in result.stdout
    assert "Property 'data' does not exist on type 'LogEntry'" in result.stdout
    assert "Property 'toUpperCase' does not exist on type 'number'" in result.stdout


def test_the_snapshot_type_has_the_models_fields_and_statuses() -> None:
    declared = (STATIC / "jobhub.d.ts").read_text()
    body = re.search(r"interface Snapshot<[^>]*> \{(.*?)\n  \}", declared, re.S)
    assert body is not None
    fields = re.findall(r"^\s+(\w+): ", body.group(1), re.M)
    assert fields == list(Snapshot.__struct_fields__)
    union = re.search(r"type Status = (.*?);", declared)
    assert union is not None
    assert re.findall(r'"(\w+)"', union.group(1)) == [status.value for status in Status]
