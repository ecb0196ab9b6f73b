// Times are shown in the viewer's own time zone and say so: an operator comparing the
// console with their own clock, or with a colleague's in another zone, must never have to
// guess whether a time is UTC. The UTC instant stays on the element (datetime, title).

/** The viewer's zone, as the browser names it ("Europe/Paris"), and its UTC offset now. */
export function zoneLabel(now = new Date()) {
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const minutes = -now.getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  const offset = `UTC${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
  return `${name}, ${offset}`;
}

/** The clock time in the viewer's zone, with the date when it is not today. */
export function clock(iso) {
  const date = new Date(iso);
  const today = date.toDateString() === new Date().toDateString();
  return date.toLocaleTimeString() + (today ? "" : " " + date.toLocaleDateString());
}

/** A `<time>` showing `clock(iso)`, the UTC instant in its datetime and on hover. */
export function timeElement(iso) {
  const element = document.createElement("time");
  setTime(element, iso);
  return element;
}

/** Point an existing `<time>` at another instant (or blank it, for null). */
export function setTime(element, iso) {
  element.dateTime = iso || "";
  element.title = iso ? `${iso} (UTC)` : "";
  element.textContent = iso ? clock(iso) : "—";
}

/** "0.21 s", "42 s", "3 min 5 s", "2 h 10 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 10) return `${Number(seconds.toPrecision(2))} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** "4 s ago", for a worker's last heartbeat. */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  return `${duration(Math.max(0, (now - Date.parse(iso)) / 1000))} ago`;
}
