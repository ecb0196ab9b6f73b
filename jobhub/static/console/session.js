// Signing the console in and out where the API is secured (JOBHUB_API_KEYS).
//
// The API key is typed once and exchanged for a session (POST /session): an HttpOnly,
// SameSite=Strict cookie that no script can read and no other site can make the browser
// send, plus a CSRF token for the changes the console makes. The key itself is never kept,
// neither in a variable nor in storage. EventSource sends the cookie as any request of the
// page does, which is what makes the live streams work in secured mode at all (it cannot
// send an Authorization header).

import { api, ApiError, useCsrf } from "./api.js";

export class Session {
  /**
   * `form`: the sign-in form (an `api_key` input, an `.error` paragraph);
   * `account`: where "Sign out" is offered; `onSignedIn` / `onSignedOut`: what the console
   * starts and stops.
   */
  constructor({ form, account, onSignedIn, onSignedOut }) {
    this.form = form;
    this.account = account;
    this.onSignedIn = onSignedIn;
    this.onSignedOut = onSignedOut;
    this.secured = false;
    this.signedIn = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn(form.elements.api_key.value);
    });
    account.querySelector("button").addEventListener("click", () => this.signOut());
  }

  /** Ask the server where this browser stands, then open the console or the form. */
  async begin() {
    const state = await api("session");
    this.secured = state.secured;
    if (!state.secured || state.signed_in) this.#enter(state.csrf);
    else this.#showForm("");
  }

  /** Ask again where this browser stands (a stream was refused): a session that ended is
   * treated as `expired`. */
  async check() {
    const state = await api("session");
    if (state.secured && !state.signed_in) this.expired();
  }

  async signIn(key) {
    const error = this.form.querySelector(".error");
    error.textContent = "";
    try {
      const state = await api("session", { method: "POST", body: { api_key: key } });
      this.form.reset(); // the key leaves the page with the form's contents
      this.#enter(state.csrf);
    } catch (exc) {
      error.textContent = exc instanceof ApiError && exc.status === 401
        ? "That API key is not one of this jobhub's keys."
        : `Could not sign in: ${exc.message}`;
      this.form.elements.api_key.select();
    }
  }

  async signOut() {
    try {
      await api("session", { method: "DELETE" });
    } finally {
      this.expired("Signed out.");
    }
  }

  /** The API said 401: the session ended (expired, or signed out in another tab). */
  expired(note = "Your session has ended; sign in again.") {
    if (!this.secured || !this.signedIn) return;
    this.signedIn = false;
    useCsrf(null);
    this.onSignedOut();
    this.#showForm(note);
  }

  #enter(csrf) {
    this.signedIn = true;
    useCsrf(csrf);
    this.form.hidden = true;
    this.account.hidden = !this.secured;
    this.onSignedIn();
  }

  #showForm(note) {
    this.account.hidden = true;
    this.form.hidden = false;
    this.form.querySelector(".note").textContent = note;
    this.form.elements.api_key.focus();
  }
}
