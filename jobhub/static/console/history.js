// The History page: every ended job the archive keeps (GET /archive/jobs, keyset-paged),
// filtered by function, status, tag, time, error text and arguments; the jobs per bucket by
// status and the run-time percentiles per function (GET /archive/stats); and a bulk retry
// of the failed jobs the filter matches (POST /archive/retry: the count first, then a
// confirmation, at most the server's bound).
//
// The filters live in the URL's fragment ("#/history?function=x&since=7d"), as the jobs
// list's do, so a view of the past can be bookmarked and shared. The page is offered only
// where the archive is on (`available`).

import { api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { bucketChart, runTimeChart } from "./history-charts.js";
import { jobHash } from "./router.js";
import { badge } from "./status.js";
import { duration, timeElement } from "./time.js";

export const FIELDS = ["function", "status", "tag", "since", "until", "error", "args", "bucket"];
const PAGE = 50;

/** The query string of the filters: `args` ("user=42 options.format=csv") becomes
 * `arg.user=42&arg.options.format=csv`. */
export function archiveQuery(filters, extra = {}) {
  const params = new URLSearchParams();
  for (const name of ["function", "status", "tag", "since", "until", "error"]) {
    if (filters[name]) params.set(name, filters[name]);
  }
  for (const pair of (filters.args || "").split(/\s+/).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at > 0) params.set(`arg.${pair.slice(0, at)}`, pair.slice(at + 1));
  }
  for (const [name, value] of Object.entries(extra)) if (value) params.set(name, value);
  return params;
}

export class History {
  constructor({ form, rows, older, empty, buckets, runtimes, functions, retry, say }) {
    Object.assign(this, { form, rows, olderButton: older, empty, buckets, runtimes, functions, retry, say });
    this.filters = {};
    this.cursor = null;
    this.generation = 0;
    older.addEventListener("click", () => this.#page(this.cursor));
    retry.querySelector("button.count").addEventListener("click", () => this.#count());
  }

  /** Whether the archive is on here (``GET /session`` says so). */
  async available() {
    return (await api("session")).archive === true;
  }

  /** Show the filters' jobs and charts (`filters`: FIELDS' values from the fragment). */
  async open(filters) {
    this.filters = filters;
    for (const name of FIELDS) if (this.form.elements[name]) this.form.elements[name].value = filters[name] || "";
    if (!this.form.elements.bucket.value) this.form.elements.bucket.value = "day";
    this.generation += 1;
    this.rows.replaceChildren();
    this.olderButton.hidden = true;
    this.empty.hidden = true;
    this.#resetRetry();
    await Promise.all([this.#page(null), this.#stats()]);
  }

  async #page(cursor) {
    const generation = this.generation;
    const query = archiveQuery(this.filters, { limit: String(PAGE), cursor });
    let page;
    try {
      page = await api(`archive/jobs?${query}`);
    } catch (exc) {
      if (generation === this.generation) this.#failed(exc);
      return;
    }
    if (generation !== this.generation) return; // the filters changed meanwhile
    for (const job of page.jobs) this.rows.append(this.#row(job));
    this.cursor = page.next_cursor;
    this.olderButton.hidden = page.next_cursor === null;
    this.empty.hidden = this.rows.children.length > 0;
    this.empty.textContent = "No archived jobs match.";
  }

  #row(job) {
    const error = job.error ? `${job.error.type}: ${job.error.detail}` : "";
    return h("tr", { id: `archived-${job.job_id}`, "data-status": job.status },
      h("td", {}, h("a", { href: jobHash(job.job_id), text: job.job_id })),
      h("td", { text: job.function }),
      h("td", {}, badge(job.status)),
      h("td", {}, timeElement(job.ended_at)),
      h("td", { text: duration(job.run_seconds) }),
      h("td", { class: "error-text", text: error }));
  }

  async #stats() {
    const generation = this.generation;
    const bucket = this.filters.bucket || "day";
    const query = archiveQuery({ ...this.filters, status: "" }, { bucket });
    let stats;
    try {
      stats = await api(`archive/stats?${query}`);
    } catch (exc) {
      if (generation === this.generation) this.#failed(exc);
      return;
    }
    if (generation !== this.generation) return;
    this.buckets.replaceChildren(bucketChart(stats.buckets, stats.bucket));
    this.runtimes.replaceChildren(runTimeChart(stats.over_time, stats.bucket));
    this.functions.replaceChildren(...stats.functions.map((f) => h("tr", { "data-function": f.function },
      h("td", { text: f.function }),
      h("td", { text: f.count }),
      h("td", { text: duration(f.p50) }),
      h("td", { text: duration(f.p95) }),
      h("td", { text: duration(f.p99) }))));
  }

  #failed(exc) {
    this.empty.hidden = false;
    this.empty.textContent = exc instanceof ApiError && exc.status === 400
      ? `Not a filter the archive takes: ${exc.message}`
      : `Could not read the archive: ${exc.message}`;
  }

  // -- bulk retry: count, confirm, retry -----------------------------------------------

  #retryFilter() {
    return Object.fromEntries(archiveQuery({ ...this.filters, status: "" }));
  }

  #resetRetry() {
    this.retry.querySelector(".said").textContent = "";
    this.retry.querySelector(".confirm").replaceChildren();
  }

  async #count() {
    const said = this.retry.querySelector(".said");
    const confirm = this.retry.querySelector(".confirm");
    confirm.replaceChildren();
    let counted;
    try {
      counted = await api("archive/retry", { method: "POST", body: { filter: this.#retryFilter() } });
    } catch (exc) {
      said.textContent = `Could not count: ${exc.message}`;
      return;
    }
    if (counted.count === 0) {
      said.textContent = "No failed job matches these filters.";
      return;
    }
    const bounded = counted.matched > counted.count
      ? ` (${counted.matched} match; the newest ${counted.limit} are retried at most)`
      : "";
    said.textContent = `${counted.count} failed jobs would be retried as new jobs${bounded}.`;
    confirm.replaceChildren(
      h("button", { type: "button", class: "danger", text: `Retry ${counted.count} jobs`,
        onclick: () => this.#retryNow(counted.count) }),  // prettier-ignore
      h("button", { type: "button", class: "quiet", text: "Cancel", onclick: () => this.#resetRetry() }),
    );
  }

  async #retryNow(count) {
    const said = this.retry.querySelector(".said");
    const confirm = this.retry.querySelector(".confirm");
    confirm.replaceChildren();
    let done;
    try {
      done = await api("archive/retry", { method: "POST", body: { filter: this.#retryFilter(), count } });
    } catch (exc) {
      // 409: the filter matches another number now; count again, and ask again.
      said.textContent = exc instanceof ApiError && exc.status === 409
        ? `${exc.message}. Count again before retrying.`
        : `Could not retry: ${exc.message}`;
      return;
    }
    const started = done.retried.filter((r) => r.created).length;
    const before = done.retried.length - started;
    const parts = [`Retried ${done.retried.length} jobs: ${started} started`];
    if (before) parts.push(`${before} had been retried before`);
    if (done.skipped.length) parts.push(`${done.skipped.length} skipped (${done.skipped[0].reason})`);
    said.textContent = parts.join(", ") + ".";
    this.say(said.textContent);
  }
}
