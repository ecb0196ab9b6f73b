// The dashboard: the newest jobs from GET /jobs, then every change from GET /events.
(function () {
  "use strict";

  var MAX_ROWS = 100;
  var body = document.getElementById("rows");
  var rows = {}; // job id -> { row, seq }

  function cell(row, index) { return row.children[index]; }

  function show(snapshot, prepend) {
    var known = rows[snapshot.job_id];
    if (known && snapshot.seq <= known.seq) return; // older than what is drawn
    if (!known) {
      var row = document.createElement("tr");
      row.id = "row-" + snapshot.job_id;
      row.innerHTML = "<td><code></code></td><td></td><td class=status></td>" +
        "<td><progress max=100></progress></td><td></td><td></td>";
      cell(row, 0).firstChild.textContent = snapshot.job_id;
      if (prepend) body.prepend(row); else body.append(row);
      known = rows[snapshot.job_id] = { row: row, seq: 0 };
      while (body.children.length > MAX_ROWS) {
        var last = body.lastElementChild;
        delete rows[last.id.slice(4)];
        last.remove();
      }
    }
    known.seq = snapshot.seq;
    var row = known.row;
    row.className = snapshot.status;
    row.dataset.status = snapshot.status;
    cell(row, 1).textContent = snapshot.function;
    cell(row, 2).textContent = snapshot.status;
    cell(row, 3).firstChild.value = snapshot.percent;
    cell(row, 3).firstChild.setAttribute("aria-label", "progress of " + snapshot.job_id);
    cell(row, 4).textContent = snapshot.error ? snapshot.error.detail : snapshot.message;
    cell(row, 5).textContent = snapshot.updated_at.replace("T", " ").slice(0, 19);
  }

  function load() {
    return fetch("/jobs?limit=50").then(function (r) { return r.json(); }).then(function (page) {
      page.jobs.forEach(function (snapshot) { show(snapshot, false); });
    });
  }

  var live = document.getElementById("live");
  var source = new EventSource("/events");
  source.onopen = function () {
    live.textContent = "● live";
    live.className = "live";
    load(); // (again) after a reconnect: what changed while the stream was down
  };
  source.onmessage = function (event) { show(JSON.parse(event.data), true); };
  source.onerror = function () { live.textContent = "reconnecting…"; live.className = ""; };
})();
