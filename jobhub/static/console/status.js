// What each status means to an operator: whether it has ended, what can be done to it, and
// how it looks. Every status has its own glyph as well as its colour, so that canceled
// (a grey, struck-through stop sign) never reads as running (a blue play sign), also to
// someone who cannot tell the colours apart.

import { h } from "./dom.js";
import { clock } from "./time.js";

export const ACTIVE = ["queued", "started", "running", "paused"];
export const ENDED = ["finished", "failed", "canceled"];
export const STATUSES = [...ACTIVE, ...ENDED];

const GLYPHS = {
  queued: "◷",
  started: "▷",
  running: "▶",
  paused: "❚❚",
  finished: "✓",
  failed: "✕",
  canceled: "⊘",
};

export function hasEnded(status) {
  return ENDED.includes(status);
}

/** Which actions the API accepts in this status, as the server's lifecycle table says
 * (a job's detail carries it: `lifecycle`, each status's actions), so that a button that
 * would only earn a 409 is disabled instead. Nothing is enabled before it is known. */
export function allowed(status, lifecycle) {
  const can = new Set((lifecycle && lifecycle[status]) || []);
  return {
    cancel: can.has("cancel"),
    pause: can.has("pause"),
    resume: can.has("resume"),
    retry: can.has("retry"),
    delete: can.has("delete"),
  };
}

/** The status as a badge: glyph and word, styled by `.badge.<status>`. */
export function badge(status) {
  return h("span", { className: `badge ${status}` },
    h("span", { "aria-hidden": "true", text: GLYPHS[status] || "•" }), " ", status);
}

/** Update a badge made by `badge` in place. */
export function setBadge(element, status) {
  element.className = `badge ${status}`;
  element.firstChild.textContent = GLYPHS[status] || "•";
  element.lastChild.textContent = status;
}

/** The line an operator reads first: the error, when it will start, or its own message. */
export function describe(snapshot) {
  if (snapshot.error) return `${snapshot.error.type}: ${snapshot.error.detail}`;
  if (snapshot.status === "queued" && snapshot.start_at) return `starts at ${clock(snapshot.start_at)}`;
  return snapshot.message;
}
