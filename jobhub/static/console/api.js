// Every request the console makes goes through here.
//
// URLs are relative ("jobs", not "/jobs"): jobhub may be mounted under a path prefix, and a
// relative URL resolves against the page (/prefix/dashboard) to /prefix/jobs.
//
// In secured mode the console is authorised by its HttpOnly session cookie, which the
// browser sends by itself; a request that changes something must also carry the session's
// CSRF token (jobhub/server/auth.py), so that another site's form cannot ride on the cookie.

let csrf = null;
const unauthorized = new EventTarget();

/** Remember the CSRF token of the signed-in session (null when signed out or open). */
export function useCsrf(token) {
  csrf = token || null;
}

/** Call `listener` whenever the API answers 401: the session expired or was signed out. */
export function onUnauthorized(listener) {
  unauthorized.addEventListener("unauthorized", listener);
}

/** A refused request: `status`, and the API's body (`error.type`, `error.detail`, and a
 * 409's `snapshot`, the job's state that made the change impossible). */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.detail || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

/** `api("jobs?limit=25")` or `api("jobs/x/retry", { method: "POST" })`: the JSON answer
 * (null for 204), or throws ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: { type: "BadResponse", detail: text.slice(0, 200) } };
  }
  if (response.status === 401) unauthorized.dispatchEvent(new Event("unauthorized"));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** The path of one job's resource: `jobPath(id, "detail")` -> "jobs/<id>/detail". */
export function jobPath(jobId, ...rest) {
  return ["jobs", encodeURIComponent(jobId), ...rest].join("/");
}
