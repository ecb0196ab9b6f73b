// The console's two small charts, drawn as inline SVG: no chart library, no build step,
// and each shape carries its figures (data-* attributes and a <title> for hover), so the
// chart can be read by a screen reader and checked by a test like any other element.

import { s } from "./dom.js";
import { clock, duration } from "./time.js";

const MAX_POINTS = 400; // a job with 10,000 reports still draws in well under a frame

/**
 * A job's percent over time, from its snapshots (GET /jobs/{id}/history, then live ones):
 * `progressChart([{ t: ms since created, percent, status }, ...])`.
 */
export function progressChart(points) {
  const width = 320, height = 120, left = 34, right = 8, top = 8, bottom = 22;
  const plotW = width - left - right, plotH = height - top - bottom;
  const span = Math.max(points.at(-1)?.t ?? 0, 1);
  const drawn = thin(points, MAX_POINTS);
  const x = (t) => left + (t / span) * plotW;
  const y = (percent) => top + plotH - (Math.min(100, Math.max(0, percent)) / 100) * plotH;
  const last = points.at(-1);
  const label = points.length
    ? `Progress over time: ${points.length} snapshots, reaching ${round(last.percent)} % after ${duration(last.t / 1000)}`
    : "Progress over time: no snapshots yet";
  return s("svg", {
    class: `chart progress-chart ${last?.status || ""}`,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    "data-points": points.length,
  },
  s("title", { text: label }),
  // A light grid at 0, 50 and 100 %, labelled on the left.
  [0, 50, 100].map((p) => [
    s("line", { class: "grid", x1: left, x2: width - right, y1: y(p), y2: y(p) }),
    s("text", { class: "tick", x: left - 4, y: y(p) + 3, "text-anchor": "end", text: `${p} %` }),
  ]),
  s("text", { class: "tick", x: left, y: height - 6, text: "0 s" }),
  s("text", { class: "tick", x: width - right, y: height - 6, "text-anchor": "end", text: duration(span / 1000) }),
  s("text", { class: "tick", x: left + plotW / 2, y: height - 6, "text-anchor": "middle", text: "since created" }),
  drawn.length
    ? s("polyline", { class: "line", points: drawn.map((p) => `${round(x(p.t))},${round(y(p.percent))}`).join(" ") })
    : null,
  last ? s("circle", { class: "dot", cx: round(x(last.t)), cy: round(y(last.percent)), r: 3 }) : null,
  );
}

/**
 * Jobs ended per minute over the last hour (GET /stats `ended_per_minute`, oldest first),
 * as stacked bars: finished at the bottom, failed above it, canceled on top.
 */
export function perMinuteChart(minutes) {
  const width = 900, height = 170, left = 30, right = 6, top = 8, bottom = 22;
  const plotW = width - left - right, plotH = height - top - bottom;
  const most = Math.max(1, ...minutes.map((m) => m.finished + m.failed + m.canceled));
  const slot = plotW / Math.max(minutes.length, 1);
  const y = (count) => (count / most) * plotH;
  const totals = { finished: 0, failed: 0, canceled: 0 };
  const bars = minutes.map((minute, i) => {
    let base = top + plotH;
    const parts = [];
    for (const kind of ["finished", "failed", "canceled"]) {
      totals[kind] += minute[kind];
      if (!minute[kind]) continue;
      const tall = Math.max(y(minute[kind]), 1);
      base -= tall;
      parts.push(s("rect", {
        class: kind, x: round(left + i * slot + 1), y: round(base),
        width: round(Math.max(slot - 2, 1)), height: round(tall),
      }));
    }
    const at = clock(new Date(minute.minute * 1000).toISOString());
    return s("g", {
      class: "minute",
      "data-minute": minute.minute,
      "data-finished": minute.finished,
      "data-failed": minute.failed,
      "data-canceled": minute.canceled,
    },
    s("title", { text: `${at}: ${minute.finished} finished, ${minute.failed} failed, ${minute.canceled} canceled` }),
    // A full-height transparent target, so that an empty minute still answers a hover.
    s("rect", { class: "hit", x: round(left + i * slot), y: top, width: round(slot), height: plotH }),
    parts);
  });
  const lastMinute = minutes.at(-1);
  // The console's one clock format (time.js), so an axis reads as every other time does.
  const tickAt = (m) => clock(new Date(m.minute * 1000).toISOString());
  const label = `Jobs ended per minute, last ${minutes.length} minutes: ` +
    `${totals.finished} finished, ${totals.failed} failed, ${totals.canceled} canceled`;
  return s("svg", {
    class: "chart minutes-chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    "data-minutes": minutes.length,
    "data-finished": totals.finished,
    "data-failed": totals.failed,
  },
  s("title", { text: label }),
  [0, most].map((count) => [
    s("line", { class: "grid", x1: left, x2: width - right, y1: top + plotH - y(count), y2: top + plotH - y(count) }),
    s("text", { class: "tick", x: left - 4, y: top + plotH - y(count) + 3, "text-anchor": "end", text: count }),
  ]),
  // The clock (the viewer's) every quarter of an hour, and at the newest minute.
  minutes.map((minute, i) => (i % 15 === 0 || minute === lastMinute) && s("text", {
    class: "tick",
    x: round(left + i * slot + (minute === lastMinute ? slot : 0)),
    y: height - 6,
    "text-anchor": i === 0 ? "start" : minute === lastMinute ? "end" : "middle",
    text: tickAt(minute),
  })),
  bars);
}

function thin(points, most) {
  if (points.length <= most) return points;
  const step = points.length / most;
  const kept = [];
  for (let i = 0; i < most - 1; i++) kept.push(points[Math.floor(i * step)]);
  kept.push(points.at(-1)); // the newest is always drawn
  return kept;
}

function round(value) {
  return Math.round(value * 10) / 10;
}
