// The list of batches: newest first (GET /batches, cursor-paged), each with its aggregate
// bar and its counts. The list is read again every few seconds while it is on screen rather
// than streamed: a stream per batch would take a connection each, and a browser allows six
// per origin; one batch, close up, is followed live (console/batch.js).

import { api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { batchHash } from "./router.js";
import { badge, setBadge } from "./status.js";
import { setTime } from "./time.js";

const PAGE = 25;
const EVERY_MS = 3000;

/** "18 finished · 2 failed · 0 at work", the counts an operator reads first. */
export function summary(batch) {
  const c = batch.counts;
  const parts = [`${c.finished} finished`, `${c.failed} failed`];
  if (c.canceled) parts.push(`${c.canceled} canceled`);
  parts.push(`${c.started + c.running + c.paused} at work`, `${c.queued} queued`);
  return `${parts.join(" · ")} of ${batch.total}`;
}

export class BatchList {
  constructor({ body, older, empty }) {
    Object.assign(this, { body, older, empty });
    this.emptyText = empty.textContent;
    this.rows = new Map(); // batch id -> { row, seq }
    this.cursor = null;
    this.timer = null;
    older.addEventListener("click", () => this.#page(this.cursor));
    body.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-batch]");
      if (row && !event.target.closest("a")) location.hash = batchHash(row.dataset.batch);
    });
  }

  /** Shown: read the newest page now and every few seconds. */
  start() {
    if (this.timer !== null) return;
    this.#page(null);
    this.timer = setInterval(() => this.#page(null), EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  /** Draw a batch's snapshot in its row (a new row goes at its place by creation time). */
  show(batch) {
    let entry = this.rows.get(batch.batch_id);
    if (entry && batch.seq <= entry.seq) return;
    if (!entry) entry = this.#insert(batch);
    entry.seq = batch.seq;
    const [, status, progress, counts, updated] = entry.row.children;
    entry.row.className = batch.status;
    entry.row.dataset.status = batch.status;
    setBadge(status.firstChild, batch.status === "active" ? "running" : batch.status);
    status.firstChild.lastChild.textContent = batch.status;
    progress.firstChild.value = batch.percent;
    counts.textContent = summary(batch);
    setTime(updated.firstChild, batch.updated_at);
    this.empty.hidden = this.rows.size > 0;
  }

  #insert(batch) {
    const created = Date.parse(batch.created_at);
    const row = h("tr", { "data-batch": batch.batch_id, "data-created": created },
      h("td", { className: "id" },
        h("a", { href: batchHash(batch.batch_id) }, h("code", { text: batch.batch_id }))),
      h("td", { className: "status" }, badge("queued")),
      h("td", { className: "progress" },
        h("progress", { max: 100, "aria-label": `progress of batch ${batch.batch_id}` })),
      h("td", { className: "counts" }),
      h("td", { className: "updated" }, h("time")),
    );
    const next = [...this.body.children].find((tr) => Number(tr.dataset.created) < created);
    this.body.insertBefore(row, next || null);
    const entry = { row, seq: 0 };
    this.rows.set(batch.batch_id, entry);
    return entry;
  }

  async #page(cursor) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) params.set("cursor", cursor);
    let page;
    try {
      page = await api(`batches?${params}`);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 401) return; // the session handles it
      this.empty.hidden = false;
      this.empty.textContent = `Could not read the batches: ${exc.message}`;
      return;
    }
    this.empty.textContent = this.emptyText;
    // The newest page read again leaves the cursor of older pages as it was.
    if (cursor !== null || this.rows.size === 0) this.cursor = page.next_cursor ?? null;
    page.batches.forEach((batch) => this.show(batch));
    this.older.hidden = this.cursor === null;
    this.empty.hidden = this.rows.size > 0;
  }
}
