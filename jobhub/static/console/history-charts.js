// The History page's two charts, drawn as inline SVG like the console's others (charts.js):
// jobs ended per bucket by status, and run-time percentiles per function over the buckets.
// Each shape carries its figures (data-* attributes and a <title>), so a screen reader and
// a test read the same numbers the eye does.

import { s } from "./dom.js";
import { duration } from "./time.js";

const KINDS = ["finished", "failed", "canceled"];
const WIDTH = 900;
const MAX_LINES = 8; // functions drawn; the table beside lists every one

/** The bucket's start as the viewer reads it: "Dec 4", "Dec 4 14:00", by the bucket size. */
function label(iso, bucket) {
  const date = new Date(iso);
  const day = date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  if (bucket === "day") return day;
  return `${day} ${date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}`;
}

/** Jobs ended per bucket (GET /archive/stats `buckets`, oldest first) as stacked bars. */
export function bucketChart(buckets, bucket) {
  const height = 180, left = 36, right = 6, top = 8, bottom = 22;
  const plotW = WIDTH - left - right, plotH = height - top - bottom;
  const total = (b) => KINDS.reduce((sum, kind) => sum + (b.counts[kind] || 0), 0);
  const most = Math.max(1, ...buckets.map(total));
  const slot = plotW / Math.max(buckets.length, 1);
  const totals = { finished: 0, failed: 0, canceled: 0 };
  const bars = buckets.map((b, i) => {
    let base = top + plotH;
    const parts = [];
    for (const kind of KINDS) {
      const count = b.counts[kind] || 0;
      totals[kind] += count;
      if (!count) continue;
      const tall = Math.max((count / most) * plotH, 1);
      base -= tall;
      parts.push(s("rect", { class: kind, x: round(left + i * slot + 1), y: round(base),
        width: round(Math.max(slot - 2, 1)), height: round(tall) }));  // prettier-ignore
    }
    const said = KINDS.map((kind) => `${b.counts[kind] || 0} ${kind}`).join(", ");
    return s("g", { class: "bucket", "data-start": b.start, "data-total": total(b),
      ...Object.fromEntries(KINDS.map((kind) => [`data-${kind}`, b.counts[kind] || 0])) },  // prettier-ignore
    s("title", { text: `${label(b.start, bucket)}: ${said}` }),
    s("rect", { class: "hit", x: round(left + i * slot), y: top, width: round(slot), height: plotH }),
    parts);
  });
  const every = Math.max(1, Math.ceil(buckets.length / 8));
  const text = `Jobs ended per ${bucket}: ${totals.finished} finished, ${totals.failed} failed, ${totals.canceled} canceled`;
  return s("svg", { class: "chart buckets-chart", viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
    "aria-label": text, "data-buckets": buckets.length,
    ...Object.fromEntries(KINDS.map((kind) => [`data-${kind}`, totals[kind]])) },  // prettier-ignore
  s("title", { text }),
  [0, most].map((count) => {
    const y = top + plotH - (count / most) * plotH;
    return [
      s("line", { class: "grid", x1: left, x2: WIDTH - right, y1: y, y2: y }),
      s("text", { class: "tick", x: left - 4, y: y + 3, "text-anchor": "end", text: count }),
    ];
  }),
  buckets.map((b, i) => i % every === 0 && s("text", {
    class: "tick", x: round(left + i * slot + slot / 2), y: height - 6, "text-anchor": "middle",
    text: label(b.start, bucket),
  })),  // prettier-ignore
  bars);
}

/**
 * Run-time percentiles per function over the buckets (GET /archive/stats `over_time`): one
 * line of p95 per function, its p50 and p99 in each point's title. The busiest functions
 * (most runs) are drawn, at most MAX_LINES.
 */
export function runTimeChart(overTime, bucket) {
  const height = 200, left = 52, right = 8, top = 10, bottom = 22;
  const plotW = WIDTH - left - right, plotH = height - top - bottom;
  const starts = [...new Set(overTime.map((p) => p.bucket))].sort();
  const byFunction = new Map();
  for (const point of overTime) {
    if (!byFunction.has(point.function)) byFunction.set(point.function, []);
    byFunction.get(point.function).push(point);
  }
  const drawn = [...byFunction.entries()]
    .sort((a, b) => sum(b[1]) - sum(a[1]))
    .slice(0, MAX_LINES);
  const most = Math.max(0.001, ...drawn.flatMap(([, points]) => points.map((p) => p.p95 ?? 0)));
  const x = (start) => left + (starts.length < 2 ? plotW / 2 : (starts.indexOf(start) / (starts.length - 1)) * plotW);
  const y = (seconds) => top + plotH - (seconds / most) * plotH;
  const text = `Run time p95 per ${bucket}, ${drawn.length} functions`;
  return s("svg", { class: "chart runtime-chart", viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
    "aria-label": text, "data-functions": drawn.length },  // prettier-ignore
  s("title", { text }),
  [0, most / 2, most].map((seconds) => [
    s("line", { class: "grid", x1: left, x2: WIDTH - right, y1: y(seconds), y2: y(seconds) }),
    s("text", { class: "tick", x: left - 4, y: y(seconds) + 3, "text-anchor": "end", text: duration(seconds) }),
  ]),
  drawn.map(([name, points], n) => s("g", { class: `series s${n}`, "data-function": name },
    s("title", { text: name }),
    s("polyline", { class: "line", points: points.map((p) => `${round(x(p.bucket))},${round(y(p.p95 ?? 0))}`).join(" ") }),
    points.map((p) => s("circle", { class: "dot", cx: round(x(p.bucket)), cy: round(y(p.p95 ?? 0)), r: 3,
      "data-bucket": p.bucket, "data-p50": p.p50, "data-p95": p.p95, "data-p99": p.p99 },  // prettier-ignore
      s("title", { text: `${name}, ${label(p.bucket, bucket)}: p50 ${duration(p.p50)}, p95 ${duration(p.p95)}, p99 ${duration(p.p99)} (${p.count} runs)` }))),
  )));
}

function sum(points) {
  return points.reduce((total, p) => total + p.count, 0);
}

function round(value) {
  return Math.round(value * 10) / 10;
}
