// The demo page's batch: twenty jobs started as one (POST /batches), eighteen that count and
// two that fail, drawn as one aggregate bar with the batch's counts. jobhub.watchBatch follows
// the batch's own stream (one connection, however many children), so the page never adds
// up twenty bars itself. A refresh brings the batches back, as it does the jobs.
(function () {
  "use strict";

  var STORE = "jobhub.demo.batches"; // batch ids on this page, oldest first
  var SHOWN = ["queued", "running", "finished", "failed", "canceled"];
  var list = document.getElementById("batches");
  var notice = document.getElementById("notice");
  var cards = {};

  // Children 7 and 14 fail after two steps; the others count five steps.
  function children() {
    var jobs = [];
    for (var i = 1; i <= 20; i++) {
      jobs.push(i % 7 === 0
        ? { function: "demo.fail", kwargs: { after: 2, delay: 0.2 } }
        : { function: "demo.count", kwargs: { steps: 5, delay: 0.2 } });
    }
    return jobs;
  }

  function saved() {
    try { return JSON.parse(localStorage.getItem(STORE)) || []; } catch (e) { return []; }
  }

  function save() {
    localStorage.setItem(STORE, JSON.stringify(Object.keys(cards)));
  }

  function card(batchId) {
    if (cards[batchId]) return cards[batchId];
    var item = document.createElement("li");
    item.className = "job batch";
    item.id = "batch-" + batchId;
    item.innerHTML =
      '<header><span class="name">batch of 20</span><code></code></header>' +
      '<span class="controls"><button type="button" class="cancel secondary">Cancel</button></span>' +
      '<label><span class="visually-hidden">Progress</span><progress max="100" value="0"></progress></label>' +
      '<p class="status" role="status" aria-live="polite"></p>' +
      '<ul class="counts"></ul>';
    item.querySelector("code").textContent = batchId;
    item.querySelector("progress").setAttribute("aria-label", "batch " + batchId);
    var counts = item.querySelector(".counts");
    SHOWN.forEach(function (status) {
      var count = document.createElement("li");
      count.dataset.status = status;
      count.innerHTML = '<strong class="n">0</strong> <span></span>';
      count.lastChild.textContent = status;
      counts.append(count);
    });
    var cancel = item.querySelector(".cancel");
    cancel.setAttribute("aria-label", "cancel batch " + batchId);
    cancel.addEventListener("click", function () {
      jobhub.cancelBatch(batchId).then(draw, function (error) {
        item.querySelector(".status").textContent = error.message;
      });
    });
    list.prepend(item);
    cards[batchId] = item;
    save();
    return item;
  }

  function draw(batch) {
    var item = card(batch.batch_id);
    var counts = batch.counts;
    var ended = jobhub.TERMINAL[batch.status];
    item.className = "job batch " + (batch.status === "active" ? "running" : batch.status);
    item.dataset.status = batch.status;
    item.querySelector("progress").value = batch.percent;
    item.querySelector(".cancel").hidden = Boolean(ended);
    SHOWN.forEach(function (status) {
      // "running" here is every child at work: started, running or paused.
      var n = status === "running"
        ? counts.started + counts.running + counts.paused : counts[status];
      item.querySelector('.counts [data-status="' + status + '"] .n').textContent = String(n);
    });
    var done = counts.finished + counts.failed + counts.canceled;
    item.querySelector(".status").textContent = batch.status + " · " +
      Math.round(batch.percent) + "% · " + done + " of " + batch.total + " ended";
  }

  function follow(batch) {
    draw(batch);
    jobhub.watchBatch(batch.batch_id, { onUpdate: draw }).catch(function (error) {
      if (cards[batch.batch_id]) cards[batch.batch_id].querySelector(".status").textContent = error.message;
    });
  }

  document.getElementById("batch").addEventListener("click", function () {
    jobhub.startBatch(children()).then(function (started) {
      notice.hidden = true;
      follow(started.batch);
    }, function (error) {
      notice.textContent = "Could not start the batch: " + error.message;
      notice.hidden = false;
    });
  });

  document.getElementById("clear").addEventListener("click", function () {
    Object.keys(cards).forEach(function (id) {
      if (jobhub.TERMINAL[cards[id].dataset.status]) { cards[id].remove(); delete cards[id]; }
    });
    save();
  });

  saved().forEach(function (batchId) {
    fetch("batches/" + encodeURIComponent(batchId)).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (batch) { if (batch) follow(batch); else save(); });
  });
})();
