// The operations console at /dashboard: the jobs (filtered, paged, live), one job close up,
// the workers and the queue; signed in first where the API is secured.
//
// Each concept is its own module under console/; this one only wires them together and
// shows the view the URL's fragment names (console/router.js).

import { onUnauthorized } from "./console/api.js";
import { BatchDetail } from "./console/batch.js";
import { BatchList } from "./console/batches.js";
import { JobDetail } from "./console/detail.js";
import { byId } from "./console/dom.js";
import { Feed } from "./console/feed.js";
import { FIELDS as HISTORY_FIELDS, History } from "./console/history.js";
import { JobList } from "./console/jobs.js";
import { go, here, historyHash, jobHash, jobsHash, onChange } from "./console/router.js";
import { Session } from "./console/session.js";
import { StartForm } from "./console/start.js";
import { Stats } from "./console/stats.js";
import { zoneLabel } from "./console/time.js";

const app = byId("app");
const notice = byId("notice");
const filters = byId("filters");
let noticeTimer = null;
let noticeFor = null; // the fragment of the view a notice was said for

/** A short notice, for the view at `hash` (the current one unless an action is about to go
 *  elsewhere): going to any other view clears it, as it speaks of what was on screen. */
function say(text, hash = location.hash) {
  notice.textContent = text;
  noticeFor = hash;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (notice.textContent = ""), 8000);
}

const feed = new Feed(byId("live"));
const list = new JobList({ body: byId("rows"), older: byId("older"), notice: byId("newer"), empty: byId("empty") });
const stats = new Stats({
  counts: byId("counts"),
  queue: byId("queue-depth"),
  chart: byId("minutes-chart"),
  workers: byId("workers"),
  functions: byId("functions"),
  updated: byId("stats-updated"),
  error: byId("stats-error"),
});
const detail = new JobDetail({
  root: byId("detail-view"),
  onSnapshot: (snapshot) => list.show(snapshot),
  // The header's counts are read from GET /stats every few seconds; read them now, so they
  // do not disagree with the job shown below until the next read.
  onStatusChanged: () => stats.refresh(),
  onDeleted: (jobId) => {
    list.remove(jobId);
    stats.refresh();
  },
  say,
});
const batches = new BatchList({ body: byId("batch-list"), older: byId("older-batches"), empty: byId("batches-empty") });
const batch = new BatchDetail({ root: byId("batch-view"), say });
new StartForm(byId("start"), (snapshot) => {
  list.show(snapshot);
  go(jobHash(snapshot.job_id));
});

const history = new History({
  form: byId("history-filters"),
  rows: byId("history-rows"),
  older: byId("history-older"),
  empty: byId("history-empty"),
  buckets: byId("history-buckets"),
  runtimes: byId("history-runtimes"),
  functions: byId("history-functions"),
  retry: byId("history-retry"),
  say,
});
let archived = false; // the archive is on: the History page is offered

const session = new Session({
  form: byId("signin"),
  account: byId("account"),
  onSignedIn: () => {
    app.hidden = false;
    feed.start();
    stats.start();
    list.filter(here().filters); // the list loads behind any view: going back is instant
    show(here());
    history.available().then((on) => {
      archived = on;
      byId("history-link").hidden = !on;
      if (on && here().view === "history") show(here());
    }).catch(() => {});
  },
  onSignedOut: () => {
    app.hidden = true;
    feed.stop();
    stats.stop();
    detail.close();
    list.clear();
    batches.stop();
    batch.close();
  },
});
onUnauthorized(() => session.expired());

feed.addEventListener("open", () => list.refresh());
feed.addEventListener("snapshot", (event) => list.show(event.detail));
feed.addEventListener("closed", async () => {
  // The browser gave up on the stream (a 401 does that, as does any non-200 answer): ask
  // whether the session ended; otherwise try again in a while.
  await session.check().catch(() => {});
  if (session.signedIn) setTimeout(() => session.signedIn && feed.start(), 5000);
});

/** Show the view the fragment names. */
function show(place) {
  if (!session.signedIn) return;
  if (noticeFor !== null && noticeFor !== location.hash) {
    notice.textContent = "";
    noticeFor = null;
  }
  byId("jobs-view").hidden = place.view !== "jobs";
  byId("workers-view").hidden = place.view !== "workers";
  byId("detail-view").hidden = place.view !== "job";
  byId("batches-view").hidden = place.view !== "batches";
  byId("batch-view").hidden = place.view !== "batch";
  byId("history-view").hidden = place.view !== "history" || !archived;
  if (place.view === "history" && archived) history.open(place.past);
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    const current = link.dataset.view === place.view || (link.dataset.view === "jobs" && place.view === "job")
      || (link.dataset.view === "batches" && place.view === "batch");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (place.view === "job") detail.open(place.id);
  else detail.close();
  if (place.view === "batches") batches.start();
  else batches.stop();
  if (place.view === "batch") batch.show(place.id, place.filters.status);
  else batch.close();
  if (place.view === "jobs") {
    filters.elements.status.value = place.filters.status;
    filters.elements.function.value = place.filters.function;
    filters.elements.tag.value = place.filters.tag;
    list.filter(place.filters);
  }
  document.title = place.view === "job" ? `job ${place.id} · jobhub`
    : place.view === "batch" ? `batch ${place.id} · jobhub` : "jobhub console";
}
onChange(show);

// Filters live in the fragment, so that a filtered list can be bookmarked and shared.
function applyFilters() {
  const fields = filters.elements;
  const tag = fields.tag.value.trim();
  go(jobsHash({ status: fields.status.value, function: fields.function.value.trim(), tag }));
}
filters.addEventListener("submit", (event) => {
  event.preventDefault();
  applyFilters();
});
filters.elements.status.addEventListener("change", applyFilters);
byId("clear-filters").addEventListener("click", () => {
  filters.reset();
  applyFilters();
});

byId("find").addEventListener("submit", (event) => {
  event.preventDefault();
  // A pasted URL (…/jobs/<id>, …#/job/<id>) works as well as the bare id.
  const value = event.target.elements.id.value.trim().replace(/\/+$/, "");
  const jobId = value.split("/").pop();
  if (/^[A-Za-z0-9_-]{1,64}$/.test(jobId)) go(jobHash(jobId));
  else say(`"${value}" is not a job id (letters, digits, _ and -).`);
});

byId("history-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const fields = event.target.elements;
  go(historyHash(Object.fromEntries(HISTORY_FIELDS.map((name) => [name, fields[name].value.trim()]))));
});

byId("newer-reload").addEventListener("click", () => list.reload());
byId("zone").textContent = zoneLabel();

session.begin().catch((exc) => say(`Could not reach jobhub: ${exc.message}`));
