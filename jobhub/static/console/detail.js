// One job, close up: what it was asked to do (arguments), when (timings, in the viewer's
// zone), where (worker), how it went (percent over time, log, output, error and traceback),
// and what can be done to it now (cancel, pause, resume, retry, delete).
//
// GET /jobs/{id}/detail and /history give the state so far; the job's own stream
// (GET /jobs/{id}/events) replays its stored output, then its snapshot, then follows it
// live. Its output always comes before the snapshot that follows it, so once the final
// snapshot arrives everything the job wrote has been drawn and the stream can be closed.

import { Actions } from "./actions.js";
import { api, ApiError, jobPath } from "./api.js";
import { progressChart } from "./charts.js";
import { h } from "./dom.js";
import { batchHash, go, jobHash, jobsHash } from "./router.js";
import { badge, describe, hasEnded, setBadge } from "./status.js";
import { duration, timeElement } from "./time.js";

const MAX_LOG_LINES = 1000;
const MAX_OUTPUT_CHARS = 200_000;

export class JobDetail {
  /** `root`: the section to draw in; `onSnapshot(snapshot)`: every state seen here, for the
   * list; `onStatusChanged(snapshot)`: the shown job's status changed; `onDeleted(id)`;
   * `say(text, hash)`: a short notice for the operator, for the view at `hash`. */
  constructor({ root, onSnapshot, onStatusChanged, onDeleted, say }) {
    Object.assign(this, { root, onSnapshot, onStatusChanged, onDeleted, say });
    this.job = null;
  }

  open(jobId) {
    if (this.job?.id === jobId) return;
    this.close();
    const job = (this.job = new Open(jobId, this));
    this.root.replaceChildren(job.element);
    job.load();
  }

  close() {
    this.job?.close();
    this.job = null;
  }
}

/** The detail view of one job while it is on screen. */
class Open {
  constructor(id, owner) {
    this.id = id;
    this.owner = owner;
    this.closed = false;
    this.seq = 0;
    this.status = null;
    this.snapshot = null;
    this.points = new Map(); // seq -> { t, percent, status }, for the chart
    this.source = null;
    this.ticker = null;
    this.chartQueued = false;
    this.outputChars = 0;
    this.timings = null;
    this.element = this.#build();
  }

  #build() {
    const el = (this.el = {});
    el.badge = badge("queued");
    el.title = h("h2", { id: "detail-title" }, h("span", { className: "fn" }), " ", h("code", { text: this.id }));
    el.progress = h("progress", { max: 100, "aria-label": `progress of ${this.id}` });
    el.percent = h("span", { className: "percent" });
    el.message = h("p", { className: "message" });
    this.actions = new Actions(this.id, {
      onSnapshot: (snapshot) => this.#snapshot(snapshot),
      onRetried: (snapshot) => {
        this.owner.onSnapshot(snapshot);
        // Said for the view it leads to: the next navigation clears it.
        this.owner.say(`Retrying ${this.id} as a new job, ${snapshot.job_id}.`, jobHash(snapshot.job_id));
        go(jobHash(snapshot.job_id));
      },
      onDeleted: () => {
        this.owner.onDeleted(this.id);
        this.owner.say(`Deleted job ${this.id}.`, jobsHash());
        go(jobsHash());
      },
      say: (text) => this.#say(text),
    });
    el.said = h("p", { className: "said", role: "status", "aria-live": "polite" });
    el.timings = h("dl", { className: "facts timings" });
    el.run = h("dl", { className: "facts run" });
    el.args = h("pre", { className: "arguments", text: "…" });
    el.result = h("section", { className: "result", hidden: true },
      h("h3", { text: "Result" }), h("pre"));
    el.error = h("section", { className: "error", id: "error", hidden: true },
      h("h3", { text: "Error" }), h("p", { className: "what" }),
      h("pre", { className: "traceback", hidden: true }));
    el.chart = h("div", { className: "chart-box" });
    el.log = h("ol", { className: "log", "aria-label": "log lines" });
    el.noLog = h("p", { className: "none", text: "No log lines yet." });
    el.output = h("pre", { className: "output", "aria-label": "output" });
    el.noOutput = h("p", { className: "none", text: "No output yet." });
    el.stream = h("span", { className: "stream" });
    return h("article", { className: "detail", "aria-labelledby": "detail-title" },
      h("p", {}, h("a", { href: jobsHash(), className: "back", text: "← All jobs" })),
      h("header", {}, el.title, el.badge),
      h("div", { className: "bar" }, el.progress, el.percent),
      el.message,
      this.actions.element,
      el.said,
      el.error,
      h("div", { className: "cards" },
        h("section", {}, h("h3", { text: "Timings " }, h("small", { text: "(your time)" })), el.timings),
        h("section", {}, h("h3", { text: "Run" }), el.run),
        h("section", {}, h("h3", { text: "Progress over time" }), el.chart),
      ),
      h("section", {}, h("h3", { text: "Arguments" }), el.args),
      el.result,
      h("section", { className: "live" }, h("h3", { text: "Log " }, el.stream), el.noLog, el.log),
      h("section", { className: "live" }, h("h3", { text: "Output" }), el.noOutput, el.output),
    );
  }

  async load() {
    let detail;
    try {
      detail = await api(jobPath(this.id, "detail"));
    } catch (exc) {
      if (this.closed) return;
      this.#missing(exc);
      return;
    }
    if (this.closed) return;
    this.actions.learn(detail.lifecycle);
    this.#facts(detail);
    this.#snapshot(detail.snapshot);
    this.#follow(); // before /history: a snapshot in between is drawn by one or the other
    try {
      const history = await api(jobPath(this.id, "history"));
      if (!this.closed) history.forEach((snapshot) => this.#point(snapshot));
    } catch {
      // The chart then starts from the live snapshots; the rest of the view stands.
    }
  }

  close() {
    this.closed = true;
    this.source?.close();
    clearInterval(this.ticker);
  }

  #missing(exc) {
    const text = exc instanceof ApiError && exc.status === 404
      ? `There is no job ${this.id}: it was deleted, or its results expired.`
      : `Could not read job ${this.id}: ${exc.message}`;
    this.element.replaceChildren(
      h("p", {}, h("a", { href: jobsHash(), className: "back", text: "← All jobs" })),
      h("p", { className: "missing", role: "alert", text }));
  }

  #follow() {
    if (this.closed) return;
    const source = (this.source = new EventSource(jobPath(this.id, "events")));
    this.el.stream.textContent = "● live";
    source.onmessage = (event) => this.#snapshot(JSON.parse(event.data));
    source.addEventListener("log", (event) => this.#log(JSON.parse(event.data)));
    source.addEventListener("output", (event) => this.#output(JSON.parse(event.data)));
    source.addEventListener("error", (event) => {
      if (event.data) {
        // The server's own `error` event: the job is gone (deleted, or expired).
        source.close();
        this.el.stream.textContent = "";
        this.#say("This job no longer exists.");
      } else if (source.readyState === EventSource.CLOSED) {
        this.el.stream.textContent = "";
      } else {
        this.el.stream.textContent = "reconnecting…";
      }
    });
  }

  /** Draw a snapshot, from wherever it came (detail, stream, an action's answer). */
  #snapshot(snapshot) {
    if (this.closed) return;
    if (hasEnded(snapshot.status)) {
      // Its output all came before this snapshot (even when the detail drew it first): an
      // ended job with none has none, not "none yet".
      this.source?.close();
      this.el.stream.textContent = "";
      this.el.noLog.textContent = "No log lines.";
      this.el.noOutput.textContent = "No output.";
    }
    if (snapshot.seq <= this.seq) return;
    const changed = this.status !== null && snapshot.status !== this.status;
    this.seq = snapshot.seq;
    this.status = snapshot.status;
    this.snapshot = snapshot;
    this.owner.onSnapshot(snapshot);
    if (changed) this.owner.onStatusChanged?.(snapshot);
    const el = this.el;
    el.title.firstChild.textContent = snapshot.function;
    setBadge(el.badge, snapshot.status);
    this.element.className = `detail ${snapshot.status}`;
    el.progress.value = snapshot.percent;
    el.percent.textContent = `${Math.round(snapshot.percent)} %`;
    el.message.textContent = describe(snapshot);
    this.actions.update(snapshot.status);
    this.#point(snapshot);
    if (snapshot.error) {
      el.error.hidden = false;
      el.error.querySelector(".what").replaceChildren(
        h("strong", { text: snapshot.error.type }), `: ${snapshot.error.detail}`);
    }
    if (snapshot.status === "finished") {
      el.result.hidden = false;
      el.result.querySelector("pre").textContent = JSON.stringify(snapshot.result, null, 2);
    }
    // Started, ended: the timings and the worker have changed with it.
    if (changed && this.timings) this.#reread();
    if (this.timings) this.#drawFacts();
  }

  async #reread() {
    try {
      const detail = await api(jobPath(this.id, "detail"));
      if (!this.closed) this.#facts(detail);
    } catch {
      // Deleted meanwhile: the stream says so.
    }
  }

  #facts(detail) {
    this.timings = detail.timings;
    this.worker = detail.worker;
    this.retryOf = detail.snapshot.retry_of;
    this.tags = detail.snapshot.tags || [];
    const args = detail.arguments;
    this.el.args.textContent = args === null
      ? "Not recorded: the job was enqueued with ARQ directly."
      : args.truncated
        ? `Too large to keep (${args.bytes} bytes).`
        : JSON.stringify(args, null, 2);
    this.#drawFacts();
  }

  #drawFacts() {
    const t = this.timings;
    const snapshot = this.snapshot;
    const entries = [
      ["Created", timeElement(t.created_at)],
      snapshot?.start_at && !t.started_at ? ["Scheduled for", timeElement(snapshot.start_at)] : null,
      ["Started", t.started_at ? timeElement(t.started_at) : "not yet"],
      ["Ended", t.ended_at ? timeElement(t.ended_at) : "not yet"],
      ["Queued for", duration(t.queued_seconds)],
      ["Ran for", t.run_seconds !== null ? duration(t.run_seconds) : h("span", { className: "running-for" })],
    ];
    this.el.timings.replaceChildren(...facts(entries));
    clearInterval(this.ticker);
    if (t.started_at && t.run_seconds === null && !hasEnded(this.status)) {
      // A running job's run time ticks on the viewer's clock.
      const tick = () => {
        const span = this.el.timings.querySelector(".running-for");
        if (span) span.textContent = `${duration((Date.now() - Date.parse(t.started_at)) / 1000)} so far`;
      };
      tick();
      this.ticker = setInterval(tick, 1000);
    }
    this.el.run.replaceChildren(...facts([
      ["Attempt", String(snapshot?.attempt ?? 1)],
      ["Worker", this.worker ? h("code", { text: this.worker }) : "none yet"],
      this.retryOf ? ["Retry of", h("a", { href: jobHash(this.retryOf) }, h("code", { text: this.retryOf }))] : null,
      // A child of a batch links to the batch's page.
      snapshot?.batch_id ? ["Batch", h("a", { href: batchHash(snapshot.batch_id), className: "batch-link" },
        h("code", { text: snapshot.batch_id }))] : null,
      // Each tag opens the list of the jobs that have it.
      this.tags?.length ? ["Tags", h("span", { className: "tags" }, ...this.tags.map((tag) =>
        h("a", { href: jobsHash({ tag }), className: "tag" }, h("code", { text: tag }))))] : null,
      ["Seq", String(this.seq)],
    ]));
  }

  #point(snapshot) {
    if (this.points.has(snapshot.seq)) return;
    this.points.set(snapshot.seq, {
      seq: snapshot.seq,
      t: Date.parse(snapshot.updated_at) - Date.parse(snapshot.created_at),
      percent: snapshot.percent,
      status: snapshot.status,
    });
    if (this.chartQueued) return;
    this.chartQueued = true; // one redraw per frame, however many snapshots arrive in it
    requestAnimationFrame(() => {
      this.chartQueued = false;
      const points = [...this.points.values()].sort((a, b) => a.seq - b.seq);
      this.el.chart.replaceChildren(progressChart(points));
    });
  }

  #log(entry) {
    const el = this.el;
    const traceback = entry.level === "error" && entry.message.startsWith("Traceback");
    if (traceback) {
      const pre = el.error.querySelector(".traceback");
      pre.textContent = entry.message;
      pre.hidden = false;
      el.error.hidden = false;
    }
    const message = traceback
      ? h("span", { className: "message" }, entry.message.split("\n").at(-1), " ",
        h("a", { href: "#error", text: "(traceback under Error)", onclick: jump }))
      : h("span", { className: "message", text: entry.message });
    el.log.append(h("li", { className: `level-${entry.level}` },
      timeElement(entry.at), " ", h("span", { className: "level", text: entry.level }), " ", message));
    while (el.log.children.length > MAX_LOG_LINES) el.log.firstChild.remove();
    el.noLog.hidden = true;
  }

  #output(entry) {
    const text = typeof entry.data === "string" ? entry.data : JSON.stringify(entry.data) + "\n";
    const pre = this.el.output;
    pre.append(text);
    this.outputChars += text.length;
    if (this.outputChars > MAX_OUTPUT_CHARS) {
      // Only the tail stays on screen; GET /jobs/{id}/output has all of it.
      const kept = pre.textContent.slice(-MAX_OUTPUT_CHARS / 2);
      pre.textContent = kept;
      this.outputChars = kept.length;
    }
    this.el.noOutput.hidden = true;
  }

  #say(text) {
    this.el.said.textContent = text;
  }
}

function facts(entries) {
  return entries.filter(Boolean).flatMap(([name, value]) => [h("dt", { text: name }), h("dd", {}, value)]);
}

function jump(event) {
  // A fragment link would change the console's place (its route lives in the fragment).
  event.preventDefault();
  document.getElementById("error")?.scrollIntoView({ behavior: "smooth" });
}
