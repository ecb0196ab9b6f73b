// The demo page: start jobs, draw a bar per job with the job's output (text as it is typed)
// and log lines under it, and restore them all after a refresh: the stream replays a job's
// output to a page that watches it again.
// URLs are relative to the page, so it works wherever jobhub is mounted (a path prefix).
(function () {
  "use strict";

  var STORE = "jobhub.demo.jobs"; // job ids on this page, oldest first, kept across refreshes
  var list = document.getElementById("jobs");
  var form = document.getElementById("start");
  var notice = document.getElementById("notice");
  var rows = {};
  var order = []; // job ids, oldest first: the newest is drawn at the top

  var kinds = {
    "demo.count": function () { return ["demo.count", { steps: Number(form.steps.value) || 10, delay: 0.3 }]; },
    "demo.tokens": function () { return ["demo.tokens", { count: 50, delay: 0.05 }]; },
    "demo.fail": function () { return ["demo.fail", { after: 2, delay: 0.3 }]; },
    "long": function () { return ["demo.count", { steps: 60, delay: 1 }]; },
  };

  function saved() {
    try { return JSON.parse(localStorage.getItem(STORE)) || []; } catch (e) { return []; }
  }

  function save() {
    localStorage.setItem(STORE, JSON.stringify(order));
  }

  function row(jobId, fn) {
    if (rows[jobId]) return rows[jobId];
    var item = document.createElement("li");
    item.className = "job";
    item.id = "job-" + jobId;
    item.innerHTML =
      '<header><span class="name"></span><code></code></header>' +
      '<span class="controls"><button type="button" class="pause secondary">Pause</button>' +
      '<button type="button" class="resume secondary">Resume</button>' +
      '<button type="button" class="cancel secondary">Cancel</button></span>' +
      '<label><span class="visually-hidden">Progress</span><progress max="100" value="0"></progress></label>' +
      '<p class="status" role="status" aria-live="polite"></p>' +
      '<p class="output" hidden></p><pre class="result" hidden></pre>' +
      '<ol class="log" hidden></ol>';
    item.querySelector(".name").textContent = fn;
    item.querySelector("code").textContent = jobId;
    item.querySelector("progress").setAttribute("aria-label", fn + " " + jobId);
    item.querySelector(".output").setAttribute("aria-label", "output of " + fn + " " + jobId);
    item.querySelector(".log").setAttribute("aria-label", "log of " + fn + " " + jobId);
    ["pause", "resume", "cancel"].forEach(function (action) {
      var button = item.querySelector("." + action);
      button.setAttribute("aria-label", action + " " + fn + " " + jobId);
      button.addEventListener("click", function () {
        // With the job's token (kept by jobhub.js) or the console's session, as the API
        // wants for a change; a refusal with the job's snapshot (409: it had ended) draws it.
        jobhub[action](jobId).then(draw, function (error) {
          var body = error.body || {};
          if (body.snapshot) draw(body.snapshot);
          else item.querySelector(".status").textContent = error.message;
        });
      });
    });
    list.prepend(item);
    rows[jobId] = item;
    order.push(jobId);
    save();
    return item;
  }

  function draw(snapshot) {
    var item = row(snapshot.job_id, snapshot.function);
    var bar = item.querySelector("progress");
    var status = item.querySelector(".status");
    var result = item.querySelector(".result");
    item.className = "job " + snapshot.status;
    item.querySelector(".cancel").hidden = Boolean(jobhub.TERMINAL[snapshot.status]);
    item.querySelector(".pause").hidden = snapshot.status !== "running";
    item.querySelector(".resume").hidden = snapshot.status !== "paused";
    item.dataset.status = snapshot.status;
    bar.value = snapshot.status === "finished" ? 100 : snapshot.percent;
    var text = snapshot.status + " · " + Math.round(bar.value) + "%";
    if (snapshot.message && snapshot.message !== snapshot.status) text += " · " + snapshot.message;
    if (snapshot.status === "failed" && snapshot.error) text = "failed: " + snapshot.error.detail;
    if (snapshot.status === "canceled") text = "canceled at " + Math.round(bar.value) + "%";
    status.textContent = text;
    var output = item.querySelector(".output");
    output.classList.toggle("typing", !jobhub.TERMINAL[snapshot.status]);
    // A job that wrote output shows that (its text is its answer), not its result again.
    if (snapshot.status === "finished" && output.hidden) {
      result.hidden = false;
      result.textContent = JSON.stringify(snapshot.result, null, 2);
    }
  }

  // A chunk of the job's output: text as it is, anything else as a line of JSON.
  function write(jobId, data) {
    var item = rows[jobId];
    if (!item) return; // cleared from the page while its output was still coming
    var output = item.querySelector(".output");
    output.hidden = false;
    output.append(typeof data === "string" ? data : JSON.stringify(data) + "\n");
    item.querySelector(".result").hidden = true;
  }

  function log(jobId, entry) {
    if (!rows[jobId]) return;
    var list = rows[jobId].querySelector(".log");
    var line = document.createElement("li");
    var time = document.createElement("time");
    var level = document.createElement("span");
    line.className = entry.level;
    time.dateTime = entry.at;
    time.textContent = new Date(entry.at).toLocaleTimeString();
    level.className = "level";
    level.textContent = entry.level;
    line.append(time, level, entry.message);
    list.hidden = false;
    list.append(line);
    list.scrollTop = list.scrollHeight;
  }

  // Ended jobs are watched too: their stream replays their output and log lines, and ends.
  function follow(snapshot) {
    var jobId = snapshot.job_id;
    draw(snapshot);
    jobhub.watch(jobId, {
      onUpdate: draw,
      onOutput: function (data) { write(jobId, data); },
      onLog: function (entry) { log(jobId, entry); },
    }).catch(function (error) {
      if (error.snapshot) draw(error.snapshot);
      else rows[jobId].querySelector(".status").textContent = error.message;
    });
  }

  // Why jobs cannot be started here, said once on the page (not in an alert per click), with
  // the buttons that would only be refused again turned off.
  function tell(html, off) {
    notice.innerHTML = html;
    notice.hidden = false;
    form.querySelectorAll("button[data-function]").forEach(function (button) {
      if (off(kinds[button.dataset.function]()[0])) button.disabled = true;
    });
  }

  function needsSignIn() {
    tell('This jobhub needs an API key. <a href="dashboard">Sign in on the console</a> ' +
      "(the key is exchanged there for a session of this browser), then reload this page.",
      function () { return true; });
  }

  function refused(error) {
    var known = error.body && error.body.error && error.body.error.known;
    if (error.status === 401 || (error.status === 403 && !known)) needsSignIn();
    else if (error.status === 422 && known) {
      // The workers of this jobhub run other functions: the demo's are not among them.
      tell("The workers of this jobhub do not offer the demo functions (demo.count, " +
        "demo.tokens, demo.fail); they offer " + (known.length ? known.join(", ") : "none: " +
        "is a worker running?") + ". Start a worker with the demo functions to use this page.",
        function (fn) { return known.indexOf(fn) < 0; });
    } else {
      notice.textContent = "Could not start the job: " + error.message;
      notice.hidden = false;
    }
  }

  function launch(kind) {
    var spec = kinds[kind]();
    jobhub.start(spec[0], { kwargs: spec[1] }).then(function (snapshot) {
      notice.hidden = true;
      follow(snapshot);
    }, refused);
  }

  // Secured and not signed in: say so before the first click. A failed look (an older
  // jobhub without GET /session) says nothing here; a refused start says it then.
  jobhub.session().then(function (state) {
    if (state.secured && !state.signed_in) needsSignIn();
  }, function () {});

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    launch("demo.count");
  });
  form.querySelectorAll("button[type=button][data-function]").forEach(function (button) {
    button.addEventListener("click", function () { launch(button.dataset.function); });
  });
  document.getElementById("clear").addEventListener("click", function () {
    Object.keys(rows).forEach(function (id) {
      if (jobhub.TERMINAL[rows[id].dataset.status]) { rows[id].remove(); delete rows[id]; }
    });
    order = order.filter(function (id) { return rows[id]; });
    save();
  });

  // After a refresh: every job on the page at once from its current snapshot, then live,
  // drawn oldest first as they were started, so the newest is on top again.
  Promise.all(saved().map(function (jobId) {
    return fetch("jobs/" + encodeURIComponent(jobId)).then(function (r) { return r.ok ? r.json() : null; });
  })).then(function (snapshots) {
    snapshots.forEach(function (snapshot) { if (snapshot) follow(snapshot); });
    save(); // forget jobs that no longer exist
  });
})();
