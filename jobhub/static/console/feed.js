// Every job's snapshots as they change (GET /events), for the list and its indicator.
//
// The stream only carries what changes from the moment it opens, so each time it (re)opens
// the list is read again (GET /jobs): whatever changed while it was down is then drawn too.
// Snapshots carry `seq`, so reading both in any order never draws an older state.

export class Feed extends EventTarget {
  constructor(indicator) {
    super();
    this.indicator = indicator;
    this.source = null;
  }

  start() {
    this.stop();
    const source = (this.source = new EventSource("events"));
    source.onopen = () => {
      this.#say("● live", "live");
      this.dispatchEvent(new Event("open"));
    };
    source.onmessage = (event) => {
      this.dispatchEvent(new CustomEvent("snapshot", { detail: JSON.parse(event.data) }));
    };
    source.onerror = () => {
      // CONNECTING: the browser retries by itself (the server sets the delay). CLOSED: it
      // gave up, as it does on a 401; whoever listens decides (sign in again).
      if (source.readyState === EventSource.CLOSED) {
        this.#say("offline", "down");
        this.dispatchEvent(new Event("closed"));
      } else {
        this.#say("reconnecting…", "down");
      }
    };
  }

  stop() {
    this.source?.close();
    this.source = null;
    this.#say("", "");
  }

  #say(text, className) {
    this.indicator.textContent = text;
    this.indicator.className = className;
  }
}
