/*
 * jobhub.js: start background jobs and watch them live. No build step, no dependencies.
 *
 *   <script src="/static/jobhub.js"></script>          window.jobhub
 *   importScripts("/static/jobhub.js")                 self.jobhub, in a Web Worker
 *   import { start, watch } from "/static/jobhub.mjs"  as an ES module
 *
 *   const job = await jobhub.start("demo.count", { kwargs: { steps: 5 } });
 *   const final = await jobhub.watch(job.job_id, { onUpdate: (s) => draw(s) });
 *
 * watch() follows all of a page's jobs over one EventSource (GET /events?jobs=...), since a
 * browser allows only six connections per origin. When that stream cannot be opened or
 * keeps failing, each job falls back to polling GET /jobs/{id} with If-None-Match: every
 * second while the job changes, backing off to five while it is idle.
 */
(function (root) {
  "use strict";

  var TERMINAL = { finished: true, failed: true, canceled: true };
  var FAST_POLL = 1000;
  var SLOW_POLL = 5000;
  var STREAM_FAILURES = 3; // consecutive stream errors before falling back to polling
  var MAX_STREAMED = 100; // jobs per stream, as the server allows

  function jobError(name, message, snapshot) {
    var error = new Error(message);
    error.name = name;
    error.snapshot = snapshot || null;
    return error;
  }

  // Job-scoped tokens handed out by POST /jobs (header Jobhub-Token), by job id. The server
  // also sets an HttpOnly cookie for the job's own paths; the stream of many jobs and other
  // origins need the token itself.
  var tokens = {};

  function authorization(jobId) {
    return tokens[jobId] ? { Authorization: "Bearer " + tokens[jobId] } : {};
  }

  /** POST /jobs; resolves with the job's first snapshot. options.apiKey, where the API
   *  needs one, belongs only in trusted code (a browser page would give it away). */
  function start(fn, options) {
    options = options || {};
    var body = { function: fn, args: options.args || [], kwargs: options.kwargs || {} };
    if (options.jobId) body.job_id = options.jobId;
    var headers = { "content-type": "application/json" };
    if (options.apiKey) headers.Authorization = "Bearer " + options.apiKey;
    return fetch((options.baseUrl || "") + "/jobs", {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        var token = response.headers.get("Jobhub-Token");
        if (token && data.job_id) tokens[data.job_id] = token;
        if (!response.ok) {
          var detail = data && data.error ? data.error.detail : "HTTP " + response.status;
          var error = jobError("RequestError", detail);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  // One stream per base URL for every job being watched; reopened when the set changes.
  var muxes = {};

  function Mux(baseUrl) {
    this.baseUrl = baseUrl;
    this.watchers = {}; // job id -> watcher
    this.source = null;
    this.failures = 0;
    this.reopen = null;
  }

  Mux.prototype.add = function (watcher) {
    this.watchers[watcher.jobId] = watcher;
    this.schedule();
  };

  Mux.prototype.remove = function (watcher) {
    if (this.watchers[watcher.jobId] === watcher) delete this.watchers[watcher.jobId];
    this.schedule();
  };

  Mux.prototype.schedule = function () {
    var self = this;
    if (self.reopen === null) self.reopen = setTimeout(function () { self.open(); }, 0);
  };

  Mux.prototype.open = function () {
    var self = this;
    self.reopen = null;
    if (self.source) { self.source.close(); self.source = null; }
    var ids = Object.keys(self.watchers);
    // The server takes up to 100 jobs per stream; any more are polled.
    ids.slice(MAX_STREAMED).forEach(function (id) {
      var watcher = self.watchers[id];
      delete self.watchers[id];
      watcher.poll();
    });
    ids = ids.slice(0, MAX_STREAMED);
    if (ids.length === 0) return;
    var url = self.baseUrl + "/events?jobs=" + ids.map(encodeURIComponent).join(",");
    var held = ids.map(function (id) { return tokens[id] || ""; });
    if (held.every(Boolean)) url += "&tokens=" + held.map(encodeURIComponent).join(",");
    var source = new EventSource(url);
    self.source = source;
    var received = false;
    source.onmessage = function (event) {
      received = true;
      self.failures = 0;
      var snapshot = JSON.parse(event.data);
      var watcher = self.watchers[snapshot.job_id];
      if (watcher) watcher.accept(snapshot);
    };
    source.onerror = function () {
      if (source !== self.source) return;
      self.failures += 1;
      // EventSource reconnects by itself with Last-Event-ID. A stream that never opened,
      // was refused, or keeps failing is given up: its jobs go on by polling, and a job
      // watched later tries a stream again.
      if (received && source.readyState !== EventSource.CLOSED && self.failures < STREAM_FAILURES) return;
      source.close();
      self.source = null;
      self.failures = 0;
      var watchers = self.watchers;
      self.watchers = {};
      Object.keys(watchers).forEach(function (id) { watchers[id].poll(); });
    };
  };

  function mux(baseUrl) {
    if (!muxes[baseUrl]) muxes[baseUrl] = new Mux(baseUrl);
    return muxes[baseUrl];
  }

  /**
   * Follow a job until it ends. Resolves with the final snapshot when it finishes; rejects
   * with an Error whose .snapshot is the last one seen when it fails or is canceled, or
   * when options.timeout (ms) passes (error.name "TimeoutError").
   * options: onUpdate(snapshot), timeout, maxAttempts (failed polls in a row before giving
   * up, default 10), baseUrl, transport ("auto" or "poll"), token (the job's token, when it
   * was not started by this page).
   */
  function watch(jobId, options) {
    options = options || {};
    var baseUrl = options.baseUrl || "";
    var onUpdate = options.onUpdate || function () {};
    var maxAttempts = options.maxAttempts || 10;
    var usePolling = options.transport === "poll" || typeof EventSource === "undefined";
    if (options.token) tokens[jobId] = options.token;

    return new Promise(function (resolve, reject) {
      var last = null;
      var etag = null;
      var failures = 0;
      var interval = FAST_POLL;
      var timer = null;
      var deadline = null;
      var polling = false;
      var done = false;
      var stream = usePolling ? null : mux(baseUrl);

      var watcher = { jobId: jobId, accept: accept, poll: startPolling };

      function finish(error, snapshot) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(deadline);
        if (stream) stream.remove(watcher);
        if (error) reject(error); else resolve(snapshot);
      }

      function accept(snapshot) {
        if (done || (last && snapshot.seq <= last.seq)) return false;
        last = snapshot;
        try { onUpdate(snapshot); } catch (e) { setTimeout(function () { throw e; }, 0); }
        if (snapshot.status === "finished") finish(null, snapshot);
        else if (TERMINAL[snapshot.status]) {
          var detail = snapshot.error ? ": " + snapshot.error.detail : "";
          finish(jobError("JobError", "job " + jobId + " " + snapshot.status + detail, snapshot));
        }
        return true;
      }

      function startPolling() {
        if (!polling && !done) { polling = true; poll(); }
      }

      function poll() {
        if (done) return;
        var headers = authorization(jobId);
        if (etag) headers["If-None-Match"] = etag;
        fetch(baseUrl + "/jobs/" + encodeURIComponent(jobId), { headers: headers, cache: "no-store" })
          .then(function (response) {
            if (response.status === 304) return null;
            if (response.status === 404) throw jobError("JobError", "no job " + jobId);
            if (!response.ok) throw new Error("HTTP " + response.status);
            etag = response.headers.get("ETag");
            return response.json();
          })
          .then(function (snapshot) {
            failures = 0;
            interval = snapshot && accept(snapshot) ? FAST_POLL : Math.min(interval * 2, SLOW_POLL);
            if (!done) timer = setTimeout(poll, interval);
          }, function (error) {
            if (error.name === "JobError") return finish(error);
            failures += 1;
            if (failures >= maxAttempts) {
              return finish(jobError("NetworkError", "gave up on job " + jobId + " after " +
                failures + " failed polls: " + error.message, last));
            }
            interval = Math.min(interval * 2, SLOW_POLL);
            timer = setTimeout(poll, interval);
          });
      }

      if (options.timeout) {
        deadline = setTimeout(function () {
          finish(jobError("TimeoutError", "timed out watching job " + jobId, last));
        }, options.timeout);
      }
      if (stream) stream.add(watcher); else startPolling();
    });
  }

  root.jobhub = { start: start, watch: watch, TERMINAL: TERMINAL };
})(typeof self !== "undefined" ? self : globalThis);
