// The buttons that change a job: cancel, pause, resume, retry, delete. Each is enabled only
// in the statuses the API accepts it in (the server's table, console/status.js), so a click
// rarely earns a 409;
// when one does (the job moved on meanwhile), its answer carries the job's state, which is
// drawn at once, and the reason, which is said.

import { api, jobPath } from "./api.js";
import { h } from "./dom.js";
import { allowed } from "./status.js";

const ACTIONS = ["cancel", "pause", "resume", "retry", "delete"];
const CONFIRM_MS = 5000;

export class Actions {
  /**
   * `new Actions(jobId, { onSnapshot, onRetried, onDeleted, say })`: `onSnapshot(snapshot)`
   * for the state an action left the job in, `onRetried(newSnapshot)`, `onDeleted()`, and
   * `say(text)` for what happened.
   */
  constructor(jobId, handlers) {
    this.jobId = jobId;
    this.handlers = handlers;
    this.status = null;
    this.lifecycle = null; // each status's actions, from the job's detail
    this.busy = false;
    this.buttons = Object.fromEntries(ACTIONS.map((action) => [action, h("button", {
      type: "button",
      className: `action ${action}`,
      "data-action": action,
      disabled: true,
      text: label(action),
      onclick: () => this.#act(action),
    })]));
    this.element = h("div", { className: "actions", role: "group", "aria-label": "actions" },
      ...Object.values(this.buttons));
  }

  /** Learn what each status allows (the detail's `lifecycle`). */
  learn(lifecycle) {
    this.lifecycle = lifecycle;
    if (this.status !== null) this.update(this.status);
  }

  /** Enable what this status allows. */
  update(status) {
    this.status = status;
    const can = allowed(status, this.lifecycle);
    for (const action of ACTIONS) this.buttons[action].disabled = !can[action] || this.busy;
    if (!can.delete) this.#unconfirm();
  }

  async #act(action) {
    const button = this.buttons[action];
    if (action === "delete" && !button.classList.contains("confirm")) {
      // Deleting cannot be undone: a second click, within a few seconds, confirms it.
      button.classList.add("confirm");
      button.textContent = "Really delete?";
      this.confirmTimer = setTimeout(() => this.#unconfirm(), CONFIRM_MS);
      return;
    }
    this.#unconfirm();
    this.busy = true;
    this.update(this.status);
    const { say } = this.handlers;
    say(`${label(action)}…`);
    const remove = action === "delete";
    try {
      const answer = await api(remove ? jobPath(this.jobId) : jobPath(this.jobId, action), {
        method: remove ? "DELETE" : "POST",
      });
      say("");
      if (remove) this.handlers.onDeleted();
      else if (action === "retry") this.handlers.onRetried(answer);
      else this.handlers.onSnapshot(answer);
    } catch (exc) {
      if (exc.body?.snapshot) this.handlers.onSnapshot(exc.body.snapshot);
      say(`Could not ${action}: ${exc.message}`);
    } finally {
      this.busy = false;
      this.update(this.status);
    }
  }

  #unconfirm() {
    clearTimeout(this.confirmTimer);
    this.buttons.delete.classList.remove("confirm");
    this.buttons.delete.textContent = label("delete");
  }
}

function label(action) {
  return action[0].toUpperCase() + action.slice(1);
}
