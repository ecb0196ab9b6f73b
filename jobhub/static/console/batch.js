// One batch, close up: its aggregate bar and counts, the children in a table filtered by
// status ("#/batch/<id>?status=failed"), and what can be done to the set: cancel every
// active child, or run the failed and canceled ones again.
//
// GET /batches/{id} and its children's pages (GET /batches/{id}/jobs?status=) draw the
// state so far; jobhub.watchBatch (the browser client, as any page would use it) follows
// the batch's stream from then on: its snapshots redraw the bar, each child's new
// snapshot its row.

import { watchBatch } from "../jobhub.mjs";
import { api, ApiError } from "./api.js";
import { summary } from "./batches.js";
import { h } from "./dom.js";
import { batchHash, go, jobHash } from "./router.js";
import { badge, describe, setBadge, STATUSES } from "./status.js";
import { setTime } from "./time.js";

const PAGE = 100;

export class BatchDetail {
  /** `root`: the section to draw in; `say(text)`: a short notice for the operator. */
  constructor({ root, say }) {
    Object.assign(this, { root, say });
    this.open = null;
  }

  /** Show batch `batchId`, its children filtered by `status` ("" for all). */
  show(batchId, status) {
    if (this.open?.id === batchId) return this.open.filter(status);
    this.close();
    this.open = new OpenBatch(batchId, this);
    this.root.replaceChildren(this.open.element);
    this.open.load(status);
  }

  close() {
    this.open?.close();
    this.open = null;
  }
}

/** The page of one batch while it is on screen. */
class OpenBatch {
  constructor(id, owner) {
    this.id = id;
    this.owner = owner;
    this.batch = null;
    this.status = null; // the children's filter; null until the first load
    this.rows = new Map(); // child job id -> { row, seq }
    this.cursor = null;
    this.generation = 0; // a page answered after the filter changed is dropped
    this.busy = false; // an action is on its way
    this.watch = new AbortController();
    this.element = this.#build();
  }

  #build() {
    const el = (this.el = {});
    el.badge = badge("queued");
    el.progress = h("progress", { max: 100, "aria-label": `progress of batch ${this.id}` });
    el.percent = h("span", { className: "percent" });
    el.counts = h("ul", { className: "batch-counts", "aria-label": "children by status" },
      STATUSES.map((status) => h("li", { "data-status": status },
        h("a", { href: batchHash(this.id, status), title: `show the ${status} children` },
          h("strong", { className: "n", text: "0" }), " ", badge(status)))));
    el.summary = h("p", { className: "message" });
    el.cancel = h("button", { type: "button", className: "action cancel", text: "Cancel batch",
      disabled: true, onclick: () => this.#act("cancel") });
    el.retry = h("button", { type: "button", className: "action retry", text: "Retry failed",
      disabled: true, onclick: () => this.#act("retry") });
    el.said = h("p", { className: "said", role: "status", "aria-live": "polite" });
    el.stream = h("span", { className: "stream" });
    el.filter = h("select", { name: "status", "aria-label": "children's status",
      onchange: () => go(batchHash(this.id, el.filter.value)) },
      h("option", { value: "", text: "any" }), STATUSES.map((s) => h("option", { value: s, text: s })));
    el.rows = h("tbody", { id: "batch-rows" });
    el.empty = h("p", { className: "none", hidden: true, text: "No children match." });
    el.older = h("button", { type: "button", className: "quiet", hidden: true, text: "More children",
      onclick: () => this.#page(this.cursor) });
    return h("article", { className: "detail batch", "aria-labelledby": "batch-title" },
      h("p", {}, h("a", { href: "#/batches", className: "back", text: "← All batches" })),
      h("header", {}, h("h2", { id: "batch-title" }, "Batch ", h("code", { text: this.id })), el.badge),
      h("div", { className: "bar" }, el.progress, el.percent),
      el.counts,
      el.summary,
      h("div", { className: "actions", role: "group", "aria-label": "actions" }, el.cancel, el.retry),
      el.said,
      h("section", {},
        h("h3", {}, "Children ", el.stream),
        h("label", { className: "filter" }, "Status ", el.filter),
        h("table", { id: "batch-children", "aria-label": "Children" },
          h("thead", {}, h("tr", {}, ["Job", "Function", "Status", "Progress", "Message", "Updated (your time)"]
            .map((name) => h("th", { scope: "col", text: name })))),
          el.rows),
        el.empty,
        el.older),
    );
  }

  async load(status) {
    let batch;
    try {
      batch = await api(`batches/${encodeURIComponent(this.id)}`);
    } catch (exc) {
      if (this.watch.signal.aborted) return;
      const text = exc instanceof ApiError && exc.status === 404
        ? `There is no batch ${this.id}: it was deleted, or it expired.`
        : `Could not read batch ${this.id}: ${exc.message}`;
      this.element.replaceChildren(
        h("p", {}, h("a", { href: "#/batches", className: "back", text: "← All batches" })),
        h("p", { className: "missing", role: "alert", text }));
      return;
    }
    this.#draw(batch);
    this.#follow();
    this.filter(status);
  }

  close() {
    this.watch.abort();
  }

  /** Show only the children with this status ("" for all); reloads when it changes. */
  filter(status) {
    status = STATUSES.includes(status) ? status : "";
    if (status === this.status) return;
    this.status = status;
    this.el.filter.value = status;
    for (const li of this.el.counts.children) li.classList.toggle("current", li.dataset.status === status);
    this.generation += 1;
    this.rows.clear();
    this.el.rows.replaceChildren();
    this.cursor = null;
    this.#page(null);
  }

  #follow() {
    const stream = this.el.stream;
    watchBatch(this.id, {
      signal: this.watch.signal,
      onUpdate: (batch) => this.#draw(batch),
      onJob: (snapshot) => this.#child(snapshot, false),
      onConnection: (state) => {
        stream.textContent = state === "stream" ? "● live" : state === "polling" ? "● live (polling)" : "";
      },
    }).catch((error) => {
      if (error.name !== "AbortError") this.#say(error.message);
    });
  }

  #draw(batch) {
    if (this.batch && batch.seq <= this.batch.seq) return;
    this.batch = batch;
    const el = this.el;
    setBadge(el.badge, batch.status === "active" ? "running" : batch.status);
    el.badge.lastChild.textContent = batch.status;
    this.element.className = `detail batch ${batch.status === "active" ? "running" : batch.status}`;
    this.element.dataset.status = batch.status;
    el.progress.value = batch.percent;
    el.percent.textContent = `${Math.round(batch.percent)} %`;
    for (const li of el.counts.children) li.querySelector(".n").textContent = String(batch.counts[li.dataset.status]);
    el.summary.textContent = summary(batch) + (batch.sealed ? "" : " · open: more children may come");
    this.#buttons();
  }

  /** Enable what the batch's state allows: cancel while it is active, retry while it has
   * failed or canceled children; neither while an action is on its way. */
  #buttons() {
    const batch = this.batch;
    this.el.cancel.disabled = this.busy || !batch || batch.status !== "active";
    this.el.retry.disabled = this.busy || !batch || batch.counts.failed + batch.counts.canceled === 0;
  }

  /** A child's snapshot, from a page (`paged`) or the stream, drawn in its row. */
  #child(snapshot, paged) {
    const known = this.rows.get(snapshot.job_id);
    if (known && snapshot.seq <= known.seq) return;
    if (this.status && snapshot.status !== this.status) {
      // "status: running" means running now: a child that moved on leaves the table.
      if (known) {
        known.row.remove();
        this.rows.delete(snapshot.job_id);
      }
      this.el.empty.hidden = this.rows.size > 0;
      return;
    }
    // From the stream, a child not drawn belongs on a page not read yet, unless all are.
    if (!known && !paged && this.cursor !== null) return;
    const entry = known || this.#insert(snapshot);
    entry.seq = snapshot.seq;
    const [, fn, status, progress, message, updated] = entry.row.children;
    entry.row.className = snapshot.status;
    entry.row.dataset.status = snapshot.status;
    fn.textContent = snapshot.function;
    setBadge(status.firstChild, snapshot.status);
    progress.firstChild.value = snapshot.percent;
    message.textContent = describe(snapshot);
    setTime(updated.firstChild, snapshot.updated_at);
    this.el.empty.hidden = this.rows.size > 0;
  }

  #insert(snapshot) {
    const row = h("tr", { id: `child-${snapshot.job_id}` },
      h("td", { className: "id" }, h("a", { href: jobHash(snapshot.job_id) }, h("code", { text: snapshot.job_id }))),
      h("td", { className: "function" }),
      h("td", { className: "status" }, badge(snapshot.status)),
      h("td", { className: "progress" }, h("progress", { max: 100, "aria-label": `progress of ${snapshot.job_id}` })),
      h("td", { className: "message" }),
      h("td", { className: "updated" }, h("time")));
    this.el.rows.append(row);
    const entry = { row, seq: 0 };
    this.rows.set(snapshot.job_id, entry);
    return entry;
  }

  async #page(cursor) {
    const generation = this.generation;
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (this.status) params.set("status", this.status);
    if (cursor !== null) params.set("after", String(cursor));
    let page;
    try {
      page = await api(`batches/${encodeURIComponent(this.id)}/jobs?${params}`);
    } catch (exc) {
      if (generation === this.generation) this.#say(`Could not read the children: ${exc.message}`);
      return;
    }
    if (generation !== this.generation || this.watch.signal.aborted) return;
    this.cursor = page.next_after ?? null; // the place of the last child read
    page.jobs.forEach((snapshot) => this.#child(snapshot, true));
    this.el.older.hidden = this.cursor === null;
    this.el.empty.hidden = this.rows.size > 0;
  }

  async #act(action) {
    this.busy = true;
    this.#buttons();
    this.#say(action === "cancel" ? "Canceling every active child…" : "Retrying the failed children…");
    try {
      const answer = await api(`batches/${encodeURIComponent(this.id)}/${action}`, { method: "POST" });
      const batch = answer?.batch || (answer?.batch_id ? answer : null);
      if (batch) this.#draw(batch);
      this.#say(action === "cancel" ? "Canceled." : "Retrying: each as a new job in its place.");
      if (action === "retry") {
        // The retried children are new jobs: the table is read again to show them.
        this.status = null;
        this.filter(this.el.filter.value);
      }
    } catch (exc) {
      if (exc.body?.batch) this.#draw(exc.body.batch);
      this.#say(`Could not ${action}: ${exc.message}`);
    } finally {
      this.busy = false;
      this.#buttons();
    }
  }

  #say(text) {
    this.el.said.textContent = text;
  }
}
