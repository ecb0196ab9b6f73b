// The demo page: start jobs, draw a bar per job, and restore them all after a refresh.
(function () {
  "use strict";

  var STORE = "jobhub.demo.jobs"; // job ids on this page, kept across refreshes
  var list = document.getElementById("jobs");
  var form = document.getElementById("start");
  var rows = {};

  var kinds = {
    "demo.count": function () { return ["demo.count", { steps: Number(form.steps.value) || 10, delay: 0.3 }]; },
    "demo.fail": function () { return ["demo.fail", { after: 2, delay: 0.3 }]; },
    "long": function () { return ["demo.count", { steps: 60, delay: 1 }]; },
  };

  function saved() {
    try { return JSON.parse(localStorage.getItem(STORE)) || []; } catch (e) { return []; }
  }

  function save() {
    localStorage.setItem(STORE, JSON.stringify(Object.keys(rows)));
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
      '<p class="status" role="status" aria-live="polite"></p><pre class="result" hidden></pre>';
    item.querySelector(".name").textContent = fn;
    item.querySelector("code").textContent = jobId;
    item.querySelector("progress").setAttribute("aria-label", fn + " " + jobId);
    ["pause", "resume", "cancel"].forEach(function (action) {
      var button = item.querySelector("." + action);
      button.setAttribute("aria-label", action + " " + fn + " " + jobId);
      button.addEventListener("click", function () {
        fetch("/jobs/" + encodeURIComponent(jobId) + "/" + action, { method: "POST" })
          .then(function (r) { return r.json(); })
          .then(function (body) { draw(body.snapshot || body); });
      });
    });
    list.prepend(item);
    rows[jobId] = item;
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
    if (snapshot.status === "finished") {
      result.hidden = false;
      result.textContent = JSON.stringify(snapshot.result, null, 2);
    }
  }

  function follow(snapshot) {
    draw(snapshot);
    if (jobhub.TERMINAL[snapshot.status]) return;
    jobhub.watch(snapshot.job_id, { onUpdate: draw }).catch(function (error) {
      if (error.snapshot) draw(error.snapshot);
      else rows[snapshot.job_id].querySelector(".status").textContent = error.message;
    });
  }

  function launch(kind) {
    var spec = kinds[kind]();
    jobhub.start(spec[0], { kwargs: spec[1] }).then(follow, function (error) {
      alert("Could not start the job: " + error.message);
    });
  }

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
    save();
  });

  // After a refresh: every job on the page at once from its current snapshot, then live.
  Promise.all(saved().reverse().map(function (jobId) {
    return fetch("/jobs/" + encodeURIComponent(jobId)).then(function (r) { return r.ok ? r.json() : null; });
  })).then(function (snapshots) {
    snapshots.forEach(function (snapshot) { if (snapshot) follow(snapshot); });
    save(); // forget jobs that no longer exist
  });
})();
