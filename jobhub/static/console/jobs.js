// The list of jobs: newest first, filtered by status, function and tag, a page at a time
// (GET /jobs, cursor-paged), every row kept live by the feed of all jobs.
//
// Rows are ordered by creation time, so a snapshot may arrive from the feed or from a page
// in any order and still land in its place: a new job at the top, an old job's change in
// its row, a job older than every loaded page nowhere (its page is not loaded).

import { api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { jobHash } from "./router.js";
import { badge, describe, setBadge, STATUSES } from "./status.js";
import { setTime } from "./time.js";

const PAGE = 25;
const MAX_ROWS = 500; // past this, new jobs are announced instead of drawn

export class JobList {
  constructor({ body, older, notice, empty }) {
    this.body = body;
    this.olderButton = older;
    this.notice = notice;
    this.empty = empty;
    this.emptyText = empty.textContent;
    this.rows = new Map(); // job id -> { row, seq, created }
    this.filters = { status: "", function: "", tag: "" };
    this.cursor = null; // of the next older page; null once the oldest is loaded
    this.loaded = false; // a page has been drawn
    this.requested = false; // a first page has been asked for
    this.generation = 0; // a page answered after the filters changed is dropped
    older.addEventListener("click", () => this.older());
    body.addEventListener("click", (event) => {
      // The whole row opens the job (easier on a phone than the id's link).
      const row = event.target.closest("tr[id^='row-']");
      if (row && !event.target.closest("a")) location.hash = jobHash(row.id.slice(4));
    });
  }

  /** Show only jobs with this status, function and tag ("" for any); reloads when they
   * change. */
  filter(filters) {
    const status = STATUSES.includes(filters.status) ? filters.status : "";
    const tag = filters.tag || "";
    const changed = status !== this.filters.status || filters.function !== this.filters.function
      || tag !== this.filters.tag;
    this.filters = { status, function: filters.function, tag };
    if (changed || !this.requested) return this.reload();
  }

  /** Start again from the newest page. */
  async reload() {
    this.clear();
    this.requested = true;
    await this.#page(null);
  }

  /** Read the newest page again, into the rows drawn (after the feed reconnects). */
  async refresh() {
    if (!this.loaded) return this.requested ? undefined : this.reload(); // it is on its way
    const generation = this.generation;
    const page = await this.#fetch(null).catch((exc) => this.#failed(exc));
    if (page && generation === this.generation) page.jobs.forEach((s) => this.show(s, true));
  }

  async older() {
    await this.#page(this.cursor);
  }

  clear() {
    this.generation += 1;
    this.rows.clear();
    this.body.replaceChildren();
    this.cursor = null;
    this.loaded = false;
    this.requested = false;
    this.notice.hidden = true;
    this.olderButton.hidden = true;
    this.empty.hidden = true;
    this.empty.textContent = this.emptyText;
  }

  matches(snapshot) {
    const { status, function: fn, tag } = this.filters;
    return (!status || snapshot.status === status) && (!fn || snapshot.function === fn)
      && (!tag || (snapshot.tags || []).includes(tag));
  }

  /** Draw a snapshot: in its row if it has one, else in a new row at its place.
   * `paged`: it comes from a page of GET /jobs, not the feed. */
  show(snapshot, paged = false) {
    const known = this.rows.get(snapshot.job_id);
    if (known && snapshot.seq <= known.seq) return; // older than what is drawn
    if (!this.matches(snapshot)) {
      // "status: running" means running now: a job that moved on leaves the list.
      if (known) this.remove(snapshot.job_id);
      return;
    }
    const entry = known || this.#insert(snapshot, paged);
    if (!entry) return;
    entry.seq = snapshot.seq;
    draw(entry.row, snapshot);
    this.empty.hidden = this.rows.size > 0;
  }

  remove(jobId) {
    this.rows.get(jobId)?.row.remove();
    this.rows.delete(jobId);
    this.empty.hidden = !this.loaded || this.rows.size > 0;
  }

  #insert(snapshot, paged) {
    const created = Date.parse(snapshot.created_at);
    const rows = [...this.rows.values()];
    const oldest = rows.reduce((least, r) => Math.min(least, r.created), Infinity);
    // From the feed, a job older than every loaded page belongs on a page not loaded yet.
    if (!paged && this.cursor !== null && created < oldest) return null;
    if (!paged && this.rows.size >= MAX_ROWS) {
      this.notice.hidden = false; // "newer jobs are not shown: reload"
      return null;
    }
    const row = h("tr", { id: `row-${snapshot.job_id}`, "data-created": created },
      h("td", { className: "id" },
        h("a", { href: jobHash(snapshot.job_id) }, h("code", { text: snapshot.job_id }))),
      h("td", { className: "function", text: snapshot.function }),
      h("td", { className: "status" }, badge(snapshot.status)),
      h("td", { className: "progress" },
        h("progress", { max: 100, "aria-label": `progress of ${snapshot.job_id}` })),
      h("td", { className: "message" }),
      h("td", { className: "updated" }, h("time")),
    );
    const entry = { row, seq: 0, created };
    // Newest first: before the first row created earlier than this one.
    const next = [...this.body.children].find((tr) => Number(tr.dataset.created) < created);
    this.body.insertBefore(row, next || null);
    this.rows.set(snapshot.job_id, entry);
    return entry;
  }

  async #page(cursor) {
    const generation = this.generation;
    // A filtered page may hold few jobs, or none, and still have older ones after it (the
    // server bounds each read): follow a few cursors so that a page is rarely empty.
    for (let hops = 0; hops < 5; hops++) {
      let page;
      try {
        page = await this.#fetch(cursor);
      } catch (exc) {
        this.#failed(exc);
        return;
      }
      if (generation !== this.generation) return;
      this.loaded = true;
      this.cursor = page.next_cursor;
      page.jobs.forEach((snapshot) => this.show(snapshot, true));
      cursor = page.next_cursor;
      if (page.jobs.length || cursor === null) break;
    }
    this.olderButton.hidden = this.cursor === null;
    this.empty.hidden = this.rows.size > 0;
  }

  #fetch(cursor) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (this.filters.status) params.set("status", this.filters.status);
    if (this.filters.function) params.set("function", this.filters.function);
    if (this.filters.tag) params.set("tag", this.filters.tag); // the tag's own index
    if (cursor !== null) params.set("cursor", cursor);
    return api(`jobs?${params}`);
  }

  #failed(exc) {
    if (!this.loaded) this.requested = false; // the next filter or reconnect tries again
    if (exc instanceof ApiError && exc.status === 401) return; // the session handles it
    this.empty.hidden = false;
    this.empty.textContent = `Could not read the jobs: ${exc.message}`;
  }
}

/** One row's cells from a snapshot. The row's class is exactly the status (styles key on
 * it: `tr.canceled` looks nothing like `tr.running`). */
function draw(row, snapshot) {
  row.className = snapshot.status;
  row.dataset.status = snapshot.status;
  row.dataset.function = snapshot.function;
  const [, fn, status, progress, message, updated] = row.children;
  fn.textContent = snapshot.function;
  setBadge(status.firstChild, snapshot.status);
  progress.firstChild.value = snapshot.percent;
  message.textContent = describe(snapshot);
  setTime(updated.firstChild, snapshot.updated_at);
}
