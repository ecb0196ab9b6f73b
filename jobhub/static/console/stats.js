// The system at a glance, from GET /stats read every few seconds: the counts at the top of
// every view, and the workers-and-queue view (live workers, queue depth, jobs ended per
// minute). Polled rather than streamed: the figures are cheap counters on the server, and
// a poll that stops while the tab is hidden costs nothing when nobody looks.

import { api, ApiError } from "./api.js";
import { perMinuteChart } from "./charts.js";
import { h } from "./dom.js";
import { go, jobsHash } from "./router.js";
import { ACTIVE, ENDED, badge } from "./status.js";
import { ago, setTime, timeElement } from "./time.js";

const EVERY_MS = 3000;

export class Stats {
  constructor({ counts, queue, chart, workers, functions, updated, error }) {
    Object.assign(this, { counts, queue, chart, workers, functions, updated, error });
    this.timer = null;
    this.running = false;
    this.latest = null;
    document.addEventListener("visibilitychange", () => {
      if (this.running && !document.hidden) this.#poll();
    });
  }

  start() {
    this.running = true;
    this.#poll();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  /** Read now (after an action), rather than at the next tick. */
  refresh() {
    if (this.running) this.#poll();
  }

  async #poll() {
    clearTimeout(this.timer);
    try {
      this.#draw(await api("stats"));
      this.error.textContent = "";
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 401) return; // the session handles it
      this.error.textContent = `Could not read /stats: ${exc.message}`;
    }
    if (this.running && !document.hidden) this.timer = setTimeout(() => this.#poll(), EVERY_MS);
  }

  #draw(stats) {
    this.latest = stats;
    const ended = { finished: 0, failed: 0, canceled: 0 };
    for (const minute of stats.ended_per_minute) {
      for (const kind of ENDED) ended[kind] += minute[kind];
    }
    this.counts.replaceChildren(
      h("li", { className: "label", text: "Now" }),
      ...ACTIVE.map((status) => chip(status, stats.counts[status] ?? 0, "now")),
      h("li", { className: "label", text: "Last hour" }),
      ...ENDED.map((status) => chip(status, ended[status], "in the last hour")),
    );
    this.queue.textContent = String(stats.queue_depth);
    this.chart.replaceChildren(perMinuteChart(stats.ended_per_minute));
    this.workers.replaceChildren(...(stats.workers.length
      ? stats.workers.map(workerRow)
      : [h("tr", {}, h("td", { colSpan: 4, className: "none", text: "No worker has sent a heartbeat lately: jobs will wait in the queue." }))]));
    const names = [...new Set(stats.workers.flatMap((w) => w.functions))].sort();
    this.functions.replaceChildren(...names.map((name) => h("option", { value: name })));
    setTime(this.updated, new Date().toISOString());
  }
}

function chip(status, count, when) {
  return h("li", {},
    h("button", {
      type: "button",
      className: `chip ${status}`,
      "data-status": status,
      title: `${count} ${status} ${when}: show them`,
      onclick: () => go(jobsHash({ status })),
    }, h("strong", { className: "count", text: count }), " ", badge(status)));
}

function workerRow(worker) {
  const beat = worker.last_beat ? timeElement(worker.last_beat) : h("span", { text: "never" });
  return h("tr", {},
    h("td", {}, h("code", { text: worker.id })),
    h("td", { className: "functions", text: worker.functions.join(", ") }),
    h("td", { className: "jobs", text: worker.jobs }),
    h("td", {}, beat, h("span", { className: "ago", text: ` (${ago(worker.last_beat)})` })));
}
