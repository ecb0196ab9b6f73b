// Starting a job by hand, now or later: POST /jobs with the function, its arguments and
// `defer_seconds` (ARQ's deferral: the job stays queued, its snapshot's start_at says
// until when). The function field suggests what the live workers offer (from /stats).

import { api } from "./api.js";

export class StartForm {
  /** `onStarted(snapshot)`: the new job's first snapshot. */
  constructor(form, onStarted) {
    this.form = form;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#start(onStarted);
    });
  }

  async #start(onStarted) {
    const fields = this.form.elements;
    const said = this.form.querySelector(".said");
    let body;
    try {
      body = {
        function: fields.function.value.trim(),
        args: parse(fields.args.value, [], "Arguments"),
        kwargs: parse(fields.kwargs.value, {}, "Keyword arguments"),
        defer_seconds: Number(fields.defer.value) || 0,
      };
    } catch (exc) {
      said.textContent = exc.message;
      return;
    }
    said.textContent = "starting…";
    try {
      const snapshot = await api("jobs", { method: "POST", body });
      said.textContent = "";
      onStarted(snapshot);
    } catch (exc) {
      said.textContent = `Could not start it: ${exc.message}`;
    }
  }
}

function parse(text, empty, name) {
  if (!text.trim()) return empty;
  try {
    return JSON.parse(text);
  } catch (exc) {
    throw new Error(`${name}: not JSON (${exc.message})`);
  }
}
