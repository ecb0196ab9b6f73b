// Where the console is, kept in the URL's fragment: "#/" (the jobs, with their filters as
// "#/?status=failed&function=demo.fail"), "#/job/<id>", "#/workers", "#/batches" and
// "#/batch/<id>" (its children filtered as "#/batch/<id>?status=failed"). A fragment never
// reaches the server, so it works under any path prefix, and a view can be bookmarked,
// shared and reloaded, and the back button goes back.

/** The current place: `{ view: "jobs" | "job" | "workers" | "batches" | "batch" | "history",
 * id, filters: { status, function, tag } }`, and for the History page `past`, its own
 * filters. */
export function here() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const filters = {
    status: params.get("status") || "",
    function: params.get("function") || "",
    tag: params.get("tag") || "",
  };
  const job = path.match(/^\/job\/([A-Za-z0-9_-]{1,64})$/);
  if (job) return { view: "job", id: job[1], filters };
  if (path === "/workers") return { view: "workers", id: null, filters };
  const batch = path.match(/^\/batch\/([A-Za-z0-9_-]{1,64})$/);
  if (batch) return { view: "batch", id: batch[1], filters };
  if (path === "/batches") return { view: "batches", id: null, filters };
  // The History page (the archive) keeps its own filters: every parameter it was given.
  if (path === "/history") return { view: "history", id: null, filters, past: Object.fromEntries(params) };
  return { view: "jobs", id: null, filters };
}

export function jobsHash(filters = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
  const query = params.toString();
  return query ? `#/?${query}` : "#/";
}

export function historyHash(filters = {}) {
  const query = new URLSearchParams(Object.entries(filters).filter(([, value]) => value)).toString();
  return query ? `#/history?${query}` : "#/history";
}

export function jobHash(jobId) {
  return `#/job/${encodeURIComponent(jobId)}`;
}

/** A batch's page, its children filtered by `status` ("" for all). */
export function batchHash(batchId, status = "") {
  const hash = `#/batch/${encodeURIComponent(batchId)}`;
  return status ? `${hash}?status=${encodeURIComponent(status)}` : hash;
}

export function go(hash) {
  if (location.hash !== hash) location.hash = hash;
}

export function onChange(listener) {
  window.addEventListener("hashchange", () => listener(here()));
}
