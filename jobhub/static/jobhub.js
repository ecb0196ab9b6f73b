/*
 * jobhub.js: start background jobs and watch them live. No build step, no dependencies.
 * Types: jobhub.d.ts (this script), jobhub.d.mts (jobhub.mjs).
 *
 *   <script src="/static/jobhub.js"></script>          window.jobhub
 *   importScripts("/static/jobhub.js")                 self.jobhub, in a Web Worker
 *   import { start, watch } from "/static/jobhub.mjs"  as an ES module
 *
 *   const job = await jobhub.start("demo.count", { kwargs: { steps: 5 } });
 *   const final = await jobhub.watch(job.job_id, { onUpdate: (s) => draw(s) });
 *
 *   jobhub.watch(job.job_id, {                        // a job's own output, as it comes
 *     onOutput: (chunk) => { text.textContent += chunk; },
 *     onLog: (entry) => console.log(entry.level, entry.message),
 *   });
 *
 * The API is found beside this script (<base>/static/jobhub.js -> <base>), so a page served
 * under a path prefix, or one that loads the script from jobhub on another origin, needs no
 * option; options.baseUrl (or jobhub.baseUrl, for every call) says otherwise.
 *
 * watch() follows all of a page's jobs over one EventSource (GET /events?jobs=...), since a
 * browser allows only six connections per origin. When that stream cannot be opened or
 * keeps failing, each job falls back to polling GET /jobs/{id} with If-None-Match: every
 * second while the job changes, backing off to five while it is idle.
 *
 * A job's output (log lines, events named "log", and chunks, named "output") comes on the
 * same stream, the job's stored entries first: a page that watches a job again after a
 * refresh gets all of it. A polling watcher reads GET /jobs/{id}/output after the last
 * entry it has. Each watcher keeps the id of the last entry it received, so no entry
 * reaches it twice or out of order, whichever way it came. Entries the job's capped output
 * dropped before they were read reach options.onGap as one {missed, from, to}, in their
 * place.
 *
 * watchJobs({tag, token}) keeps the live list of a tag's jobs (GET /events?tag=, jobs
 * created later included), polling GET /jobs?tag= where the stream cannot be had. Both
 * take options.signal (an AbortSignal: stop, and send nothing more) and
 * options.onConnection("stream" | "polling" | "closed"), which jobhub-react.mjs builds on.
 *
 * A batch (many jobs as one) has calls of its own: startBatch(jobs), watchBatch(id,
 * {onUpdate, onJob, onConnection, signal}) over the batch's own stream, with the same
 * polling fallback and resume, cancelBatch(id) and retryBatch(id).
 */
(function (root) {
  "use strict";

  var TERMINAL = { finished: true, failed: true, canceled: true };
  var FAST_POLL = 1000;
  var SLOW_POLL = 5000;
  var STREAM_FAILURES = 3; // consecutive stream errors before falling back to polling
  var MAX_STREAMED = 100; // jobs per stream, as the server allows
  var OUTPUT_PAGE = 1000; // entries per GET /jobs/{id}/output, the most the server gives
  var CHILD_PAGE = 100; // children per GET /batches/{id}/jobs while polling, the most a page holds

  // Whether entry id a ("1700000000000-3", a Redis stream id) comes after b. They order by
  // their two numbers, not as text ("9-0" is before "10-0").
  function isAfter(a, b) {
    if (!b) return true;
    var x = a.split("-"), y = b.split("-");
    var ms = Number(x[0]) - Number(y[0]);
    return ms > 0 || (ms === 0 && Number(x[1]) > Number(y[1]));
  }

  // A page's callback that throws must not stop the watch: its error is thrown on its own.
  function call(callback, value) {
    try { callback(value); } catch (e) { setTimeout(function () { throw e; }, 0); }
  }

  // When an EventSource that failed is given up (its watchers go on by polling): it never
  // delivered anything, was closed by the browser (refused, not a 200), or keeps failing.
  // Otherwise the browser reconnects by itself, with Last-Event-ID.
  function givesUp(source, received, failures) {
    return !received || source.readyState === EventSource.CLOSED || failures >= STREAM_FAILURES;
  }

  // The pace of a poller: every FAST_POLL while what it reads changes, backing off to
  // SLOW_POLL while it is idle or failing; null once maxAttempts reads in a row failed.
  function Pace(maxAttempts) {
    this.interval = FAST_POLL;
    this.failures = 0;
    this.maxAttempts = maxAttempts || 10;
  }

  Pace.prototype.read = function (changed) {
    this.failures = 0;
    this.interval = changed ? FAST_POLL : Math.min(this.interval * 2, SLOW_POLL);
    return this.interval;
  };

  Pace.prototype.failed = function () {
    this.failures += 1;
    if (this.failures >= this.maxAttempts) return null;
    this.interval = Math.min(this.interval * 2, SLOW_POLL);
    return this.interval;
  };

  // A resource read again and again with If-None-Match: read() resolves with its JSON, or
  // null while it is unchanged (304); a 404 rejects with missing().
  function Conditional(url, headers, missing) {
    this.url = url;
    this.headers = headers;
    this.missing = missing;
    this.etag = null;
  }

  Conditional.prototype.read = function () {
    var self = this;
    var headers = self.headers();
    if (self.etag) headers["If-None-Match"] = self.etag;
    return fetch(self.url, { headers: headers, cache: "no-store" }).then(function (response) {
      if (response.status === 304) return null;
      if (response.status === 404) throw self.missing();
      if (!response.ok) throw requestError(response.status, "HTTP " + response.status);
      self.etag = response.headers.get("ETag");
      return response.json();
    });
  };

  // This script's own URL: the <script> element running it, else (importScripts in a
  // Worker, or evaluated as a module by jobhub.mjs, where there is no such element) the
  // frame of the stack that names it, as Chrome, Firefox and Safari all print it.
  function ownBase() {
    var src = typeof document !== "undefined" && document.currentScript
      ? document.currentScript.src : ((new Error()).stack || "");
    var found = /(https?:\/\/[^\s()]*?)\/static\/jobhub\.js(?=[?#:)\s]|$)/.exec(src);
    if (found) return found[1];
    // Not where jobhub serves it (a copy, a bundle): the origin's root, as a relative URL
    // would be. A Worker made from a blob: URL has no base to resolve against, but its
    // origin is its page's; one from a data: URL has none (origin "null").
    if (typeof location !== "undefined" && location.protocol === "blob:") return location.origin;
    if (typeof location !== "undefined" && location.protocol === "data:") return null;
    return "";
  }

  function apiBase(options) {
    var base = options.baseUrl != null ? options.baseUrl : api.baseUrl;
    if (base == null) {
      throw new TypeError("jobhub: no base URL here (a Worker made from a data: URL): pass " +
        "options.baseUrl or set jobhub.baseUrl, e.g. \"https://jobs.example.com\"");
    }
    return String(base).replace(/\/+$/, "");
  }

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

  // A signed-in console's CSRF token, by base URL, learned from GET /session the first time
  // the API refuses a change that had no other credential. With it, a page of jobhub's own
  // origin acts with the console's session cookie (which no script can read).
  var csrfTokens = {};

  /** GET /session: {secured, signed_in, csrf}, this browser's standing with the API. Its
   *  CSRF token is kept for this page's later changes. */
  function session(options) {
    options = options || {};
    var baseUrl;
    try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
    return fetch(baseUrl + "/session", { cache: "no-store" }).then(function (response) {
      if (!response.ok) throw requestError(response.status, "HTTP " + response.status);
      return response.json();
    }).then(function (state) {
      if (state.csrf) csrfTokens[baseUrl] = state.csrf; else delete csrfTokens[baseUrl];
      return state;
    });
  }

  function requestError(status, detail, data) {
    var error = jobError("RequestError", detail);
    error.status = status;
    error.body = data || null;
    return error;
  }

  // A change (POST): sent with the credential given, else the console session's CSRF token
  // if one is known. Refused for want of a credential (401, 403) with none given, it asks
  // GET /session once and, signed in, goes again with the token. A refused request changed
  // nothing, so sending it again is safe.
  function change(baseUrl, path, body, credential) {
    function send() {
      var headers = { "content-type": "application/json" };
      if (credential) headers.Authorization = "Bearer " + credential;
      else if (csrfTokens[baseUrl]) headers["X-CSRF-Token"] = csrfTokens[baseUrl];
      return fetch(baseUrl + path, { method: "POST", headers: headers, body: body });
    }
    var had = csrfTokens[baseUrl];
    return send().then(function (response) {
      if (credential || (response.status !== 401 && response.status !== 403)) return response;
      return session({ baseUrl: baseUrl }).then(function (state) {
        return state.csrf && state.csrf !== had ? send() : response;
      }, function () { return response; });
    }).then(function (response) {
      return response.json().then(function (data) {
        if (response.ok) return [response, data];
        var detail = data && data.error ? data.error.detail : "HTTP " + response.status;
        throw requestError(response.status, detail, data);
      });
    });
  }

  /** POST /jobs; resolves with the job's first snapshot. options.token, a scoped token with
   *  "start" that the page's backend minted for its user, starts the job as that user (it
   *  gets the scope's tag) and then opens it for watch and cancel. options.apiKey, where the
   *  API needs one, belongs only in trusted code (a browser page would give it away); a page
   *  of jobhub's origin whose browser signed in to the console needs neither. */
  function start(fn, options) {
    options = options || {};
    var baseUrl;
    try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
    var body = { function: fn, args: options.args || [], kwargs: options.kwargs || {} };
    if (options.jobId) body.job_id = options.jobId;
    if (options.tags) body.tags = options.tags;
    var credential = options.token || options.apiKey;
    return change(baseUrl, "/jobs", JSON.stringify(body), credential).then(function (answer) {
      remember(tokens, answer[1].job_id, answer[0], options.token);
      return answer[1];
    });
  }

  // The token a started job or batch is opened with from now on: its own (the answer's
  // Jobhub-Token header), else the scoped token that started it.
  function remember(held, id, response, scoped) {
    var token = response.headers.get("Jobhub-Token") || scoped;
    if (token && id) held[id] = token;
  }

  // POST /jobs/{id}/cancel (pause, resume) with the job's token, an API key or the session.
  function control(action) {
    return function (jobId, options) {
      options = options || {};
      var baseUrl;
      try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
      if (options.token) tokens[jobId] = options.token;
      var path = "/jobs/" + encodeURIComponent(jobId) + "/" + action;
      return change(baseUrl, path, "{}", options.apiKey || tokens[jobId]).then(function (answer) {
        return answer[1].snapshot || answer[1];
      });
    };
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
    // The stream is kept for the others: the server sends nothing more of an ended job, and
    // a new stream would replay every other job's output (deduplicated, but sent again).
    if (Object.keys(this.watchers).length === 0) this.schedule();
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
    // One scoped token (POST /tokens, "~scope....") for all of them goes as ?token=; job
    // tokens go one per job.
    var scoped = /^~scope\./.test(held[0]) && held.every(function (t) { return t === held[0]; });
    if (scoped) url += "&token=" + encodeURIComponent(held[0]);
    else if (held.every(Boolean)) url += "&tokens=" + held.map(encodeURIComponent).join(",");
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
    // An entry's data does not name its job; its id, the cursor, does: each job's position
    // in the order listed, "<seq>:<entry id>". The entry belongs to the one job whose
    // position is past the last entry its watcher has. Every other job's position is at or
    // before its watcher's (each entry that moved one was handed to it), so that job is the
    // only candidate, and when none is, the entry is one its watcher already has (a new
    // stream replays all output).
    // A gap (entries the job's capped output dropped before they were read) is routed the
    // same way: its id moves the position past them.
    function routed(handle) {
      return function (event) {
        received = true;
        self.failures = 0;
        var places = String(event.lastEventId).split(".");
        if (places.length !== ids.length) return;
        for (var i = 0; i < ids.length; i++) {
          var watcher = self.watchers[ids[i]];
          var entryId = places[i].split(":")[1];
          if (watcher && entryId && isAfter(entryId, watcher.lastEntry())) {
            handle(watcher, JSON.parse(event.data), entryId);
            return;
          }
        }
      };
    }
    var onEntry = routed(function (watcher, entry, entryId) {
      entry.id = entryId;
      watcher.take(entry);
    });
    source.addEventListener("log", onEntry);
    source.addEventListener("output", onEntry);
    source.addEventListener("gap", routed(function (watcher, gap) { watcher.skip(gap); }));
    source.onerror = function () {
      if (source !== self.source) return;
      self.failures += 1;
      // EventSource reconnects by itself with Last-Event-ID. A stream that never opened,
      // was refused, or keeps failing is given up: its jobs go on by polling, and a job
      // watched later tries a stream again.
      if (!givesUp(source, received, self.failures)) return;
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
   * options: onUpdate(snapshot), onOutput(data, entry) for each chunk of the job's output
   * and onLog(entry) for each line it logged (both from the job's first, each once, in
   * order), onGap({missed, from, to}) in the place of entries the job's capped output
   * dropped before they were read (without it, console.warn says how many), timeout,
   * maxAttempts (failed polls in a row before giving up, default 10),
   * baseUrl, transport ("auto" or "poll"), token (the job's token, when it was not started
   * by this page), signal (an AbortSignal: the watch stops, its stream and timers with it,
   * and rejects with an "AbortError"), onConnection(state) when the way it follows the job
   * changes: "stream", "polling", then "closed" once it has ended. A stream cut (a proxy's
   * idle timeout) is reconnected and stays "stream".
   */
  function watch(jobId, options) {
    options = options || {};
    var baseUrl;
    try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
    var onUpdate = options.onUpdate || function () {};
    var onLog = options.onLog || null;
    var onOutput = options.onOutput || null;
    var onGap = options.onGap || function (gap) {
      console.warn("jobhub: job " + jobId + " missed " + gap.missed + " entries of its output (trimmed)");
    };
    var usePolling = options.transport === "poll" || typeof EventSource === "undefined";
    if (options.token) tokens[jobId] = options.token;
    var connection = connectionReporter(options.onConnection);
    var signal = options.signal || null;
    if (signal && signal.aborted) return Promise.reject(aborted("job " + jobId));

    return new Promise(function (resolve, reject) {
      var last = null;
      var lastEntry = null; // the id of the last entry of the job's output received
      var pace = new Pace(options.maxAttempts);
      var reader = new Conditional(baseUrl + "/jobs/" + encodeURIComponent(jobId),
        function () { return authorization(jobId); },
        function () { return jobError("JobError", "no job " + jobId); });
      var timer = null;
      var deadline = null;
      var polling = false;
      var done = false;
      var stream = usePolling ? null : mux(baseUrl);

      var watcher = {
        jobId: jobId, accept: accept, take: take, skip: skip, poll: startPolling,
        lastEntry: function () { return lastEntry; },
      };

      function finish(error, snapshot) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(deadline);
        if (stream) stream.remove(watcher);
        if (signal) signal.removeEventListener("abort", abort);
        connection("closed");
        if (error) reject(error); else resolve(snapshot);
      }

      function abort() { finish(aborted("job " + jobId)); }

      function accept(snapshot) {
        if (done || (last && snapshot.seq <= last.seq)) return false;
        last = snapshot;
        call(onUpdate, snapshot);
        if (snapshot.status === "finished") finish(null, snapshot);
        else if (TERMINAL[snapshot.status]) {
          var detail = snapshot.error ? ": " + snapshot.error.detail : "";
          finish(jobError("JobError", "job " + jobId + " " + snapshot.status + detail, snapshot));
        }
        return true;
      }

      // One entry of the job's output ({id, kind, at, ...}); false if it is not new.
      function take(entry) {
        if (done || !isAfter(entry.id, lastEntry)) return false;
        lastEntry = entry.id;
        try {
          if (entry.kind === "output" && onOutput) onOutput(entry.data, entry);
          else if (entry.kind === "log" && onLog) onLog(entry);
        } catch (e) { setTimeout(function () { throw e; }, 0); }
        return true;
      }

      // Entries that were dropped before they reached this watcher ({missed, from, to}):
      // said once, and the watcher reads on after them.
      function skip(gap) {
        if (done || !isAfter(gap.to, lastEntry)) return false;
        // Ids carry their entry's ordinal ("<ms>-<n>"). A reopened stream replays from the
        // job's first entry, not from this watcher's place: count from here.
        var held = lastEntry ? lastEntry.split("-") : ["0", "0"];
        if (Number(held[1]) >= Number(gap.from.split("-")[1])) {
          var had = Number(held[1]);
          gap = { missed: Number(gap.to.split("-")[1]) - had, from: held[0] + "-" + (had + 1), to: gap.to };
        }
        lastEntry = gap.to;
        call(onGap, gap);
        return true;
      }

      // The entries after the last one received, a page at a time; resolves with how many.
      function pollOutput() {
        var url = baseUrl + "/jobs/" + encodeURIComponent(jobId) + "/output?limit=" +
          OUTPUT_PAGE + "&after=" + encodeURIComponent(lastEntry || "0");
        return fetch(url, { headers: authorization(jobId), cache: "no-store" })
          .then(function (response) {
            if (response.status === 404) throw jobError("JobError", "no job " + jobId);
            if (!response.ok) throw new Error("HTTP " + response.status);
            return response.json();
          })
          .then(function (page) {
            if (page.gap) skip(page.gap);
            var taken = page.entries.filter(take).length;
            if (page.entries.length < OUTPUT_PAGE || done) return taken;
            return pollOutput().then(function (more) { return taken + more; });
          });
      }

      function startPolling() {
        if (!polling && !done) { polling = true; connection("polling"); poll(); }
      }

      function poll() {
        if (done) return;
        reader.read()
          .then(function (snapshot) {
            // The snapshot first, then the output: all that was written before that
            // snapshot (all of it, for a final one) is then handed over before it.
            if (!onLog && !onOutput) return [snapshot, 0];
            return pollOutput().then(function (taken) { return [snapshot, taken]; });
          })
          .then(function (polled) {
            var changed = polled[0] ? accept(polled[0]) : false;
            var wait = pace.read(changed || polled[1] > 0);
            if (!done) timer = setTimeout(poll, wait);
          }, function (error) {
            if (error.name === "JobError") return finish(error);
            var wait = pace.failed();
            if (wait === null) {
              return finish(jobError("NetworkError", "gave up on job " + jobId + " after " +
                pace.failures + " failed polls: " + error.message, last));
            }
            timer = setTimeout(poll, wait);
          });
      }

      if (options.timeout) {
        deadline = setTimeout(function () {
          finish(jobError("TimeoutError", "timed out watching job " + jobId, last));
        }, options.timeout);
      }
      if (signal) signal.addEventListener("abort", abort);
      if (stream) { connection("stream"); stream.add(watcher); } else startPolling();
    });
  }

  // onConnection, called only when the state changes.
  function connectionReporter(onConnection) {
    var state = null;
    return function (next) {
      if (next === state || !onConnection) return;
      state = next;
      call(onConnection, next);
    };
  }

  function aborted(what) {
    return jobError("AbortError", "stopped watching " + what);
  }

  // ---- watchJobs: the live list of a tag's jobs ---------------------------------------

  var LIST_PAGE = 100; // jobs per GET /jobs?tag= while polling, the most the server gives

  // Newest first, as GET /jobs lists them: by creation time, then id (ISO 8601 strings of
  // one format order as text).
  function newestFirst(a, b) {
    if (a.created_at !== b.created_at) return a.created_at < b.created_at ? 1 : -1;
    return a.job_id < b.job_id ? 1 : a.job_id > b.job_id ? -1 : 0;
  }

  /**
   * Keep the live list of the jobs tagged options.tag: GET /events?tag= sends the tag's
   * jobs, then every change of any of them, jobs created later included; where that stream
   * cannot be had, GET /jobs?tag= is polled (every second while the list changes, backing
   * off to five). A cut stream is reconnected by the browser with Last-Event-ID, which
   * resumes it; each job only ever moves to a higher seq.
   * options: tag (required), token (a scoped token from POST /tokens, sent as ?token= on
   * the stream and as Authorization on a poll), onUpdate(jobs) with the whole list, newest
   * first, after every change; onJob(snapshot) for each new snapshot; onConnection(state);
   * signal (an AbortSignal: stop); maxAttempts; baseUrl.
   * The list never ends on its own: the promise rejects with an "AbortError" once the
   * signal is aborted, or a "RequestError" (error.status) when the API refuses (a token
   * that does not hold the tag: 403), or a "NetworkError" after maxAttempts failed polls.
   */
  function watchJobs(options) {
    options = options || {};
    var baseUrl;
    try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
    if (!options.tag) return Promise.reject(new TypeError("jobhub.watchJobs: options.tag is needed"));
    var tag = String(options.tag);
    var token = options.token || null;
    var onUpdate = options.onUpdate || function () {};
    var onJob = options.onJob || function () {};
    var maxAttempts = options.maxAttempts || 10;
    var connection = connectionReporter(options.onConnection);
    var signal = options.signal || null;
    if (signal && signal.aborted) return Promise.reject(aborted("tag " + tag));

    return new Promise(function (resolve, reject) {
      var jobs = {}; // job id -> its newest snapshot
      var source = null;
      var timer = null;
      var done = false;
      var failures = 0;
      var interval = FAST_POLL;

      function finish(error) {
        if (done) return;
        done = true;
        if (source) { source.close(); source = null; }
        clearTimeout(timer);
        if (signal) signal.removeEventListener("abort", abort);
        connection("closed");
        reject(error);
      }

      function abort() { finish(aborted("tag " + tag)); }

      // Whether the snapshot is news: a job only ever moves to a higher seq.
      function take(snapshot) {
        var held = jobs[snapshot.job_id];
        if (done || (held && snapshot.seq <= held.seq)) return false;
        jobs[snapshot.job_id] = snapshot;
        call(onJob, snapshot);
        return true;
      }

      function update() {
        var list = Object.keys(jobs).map(function (id) { return jobs[id]; }).sort(newestFirst);
        call(onUpdate, list);
      }

      function stream() {
        var url = baseUrl + "/events?tag=" + encodeURIComponent(tag);
        if (token) url += "&token=" + encodeURIComponent(token);
        var opened = false;
        connection("stream");
        source = new EventSource(url);
        // Opening counts, not only an event: a tag with no jobs yet sends none, and its
        // stream is live all the same.
        source.onopen = function () { opened = true; failures = 0; };
        source.onmessage = function (event) {
          if (take(JSON.parse(event.data))) update();
        };
        source.onerror = function () {
          if (done) return;
          failures += 1;
          // EventSource reconnects by itself with Last-Event-ID (a proxy's idle timeout, a
          // web process that went away). A stream that never opened, was refused, or keeps
          // failing is given up for polling, which also says why a refusal was one.
          if (opened && source.readyState !== EventSource.CLOSED && failures < STREAM_FAILURES) return;
          source.close();
          source = null;
          failures = 0;
          poll();
        };
      }

      function poll() {
        if (done) return;
        connection("polling");
        var url = baseUrl + "/jobs?tag=" + encodeURIComponent(tag) + "&limit=" + LIST_PAGE;
        var headers = token ? { Authorization: "Bearer " + token } : {};
        fetch(url, { headers: headers, cache: "no-store" })
          .then(function (response) {
            return response.json().then(function (data) {
              if (response.ok) return data;
              var detail = data && data.error ? data.error.detail : "HTTP " + response.status;
              throw requestError(response.status, detail, data);
            }, function () { throw new Error("HTTP " + response.status); });
          })
          .then(function (page) {
            failures = 0;
            var changed = page.jobs.filter(take).length > 0;
            if (changed) update();
            interval = changed ? FAST_POLL : Math.min(interval * 2, SLOW_POLL);
            if (!done) timer = setTimeout(poll, interval);
          }, function (error) {
            if (done) return;
            // Refused (a token without the tag, an expired one): polling again will not help.
            if (error.name === "RequestError" && error.status >= 400 && error.status < 500) {
              return finish(error);
            }
            failures += 1;
            if (failures >= maxAttempts) {
              return finish(jobError("NetworkError", "gave up on tag " + tag + " after " +
                failures + " failed polls: " + error.message));
            }
            interval = Math.min(interval * 2, SLOW_POLL);
            timer = setTimeout(poll, interval);
          });
      }

      if (signal) signal.addEventListener("abort", abort);
      if (typeof EventSource === "undefined" || options.transport === "poll") poll(); else stream();
    });
  }

  // ---- Batches: many jobs watched as one ---------------------------------------------
  // A batch has its own versioned snapshot ({batch_id, status, total, counts, percent, seq,
  // ...}) and its own stream, GET /batches/{id}/events: the batch's snapshots unnamed, each
  // child's new snapshot as an event named "job", every id resumable with Last-Event-ID.

  // Batch tokens handed out by POST /batches (header Jobhub-Token), by batch id: a token
  // opens the batch, its children and their streams.
  var batchTokens = {};

  function batchPath(batchId, rest) {
    return "/batches/" + encodeURIComponent(batchId) + (rest || "");
  }

  function batchAuthorization(batchId) {
    return batchTokens[batchId] ? { Authorization: "Bearer " + batchTokens[batchId] } : {};
  }

  /** POST /batches: every job created in one step (all or none); resolves with
   *  {batch_id, job_ids, batch}. jobs: [{function, args?, kwargs?, jobId?, weight?, tags?}];
   *  options.token, a scoped token with "start", starts it as that token's user. */
  function startBatch(jobs, options) {
    options = options || {};
    var baseUrl;
    try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
    var body = {
      jobs: (jobs || []).map(function (spec) {
        var child = { function: spec.function, args: spec.args || [], kwargs: spec.kwargs || {} };
        if (spec.jobId) child.job_id = spec.jobId;
        if (spec.weight != null) child.weight = spec.weight;
        if (spec.tags) child.tags = spec.tags;
        return child;
      }),
    };
    if (options.batchId) body.batch_id = options.batchId;
    if (options.open) body.open = true;
    if (options.callbackUrl) body.callback_url = options.callbackUrl;
    var credential = options.token || options.apiKey;
    return change(baseUrl, "/batches", JSON.stringify(body), credential).then(function (answer) {
      remember(batchTokens, answer[1].batch_id, answer[0], options.token);
      return answer[1];
    });
  }

  // POST /batches/{id}/cancel (retry) with the batch's token, an API key or the session.
  // Cancel answers with the batch's snapshot, retry with {job_ids, batch}.
  function batchControl(action) {
    return function (batchId, options) {
      options = options || {};
      var baseUrl;
      try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
      if (options.token) batchTokens[batchId] = options.token;
      var credential = options.apiKey || batchTokens[batchId];
      return change(baseUrl, batchPath(batchId, "/" + action), "{}", credential)
        .then(function (answer) { return answer[1]; });
    };
  }

  /**
   * Follow a batch until it ends. Resolves with its final snapshot, whatever its status
   * ("finished", "failed": some child failed, "canceled"); rejects when there is no such
   * batch ("BatchError"), when options.signal aborts ("AbortError"), when the API refuses
   * ("RequestError", error.status: a token for another batch is a 403), or after
   * maxAttempts failed polls ("NetworkError").
   * options: onUpdate(batch) for every newer batch snapshot, onJob(snapshot) for every newer
   * snapshot of a child (each child's seq only ever goes up: none is handed over twice;
   * a new stream starts with the children changed last, up to 200, polling with all),
   * onConnection("stream" | "polling" | "closed"), signal, baseUrl, token, transport
   * ("auto" or "poll"), maxAttempts.
   * Like watch(), it falls back to polling when the stream cannot be had: GET /batches/{id}
   * with If-None-Match and, when the batch changed and onJob is given, its children's pages
   * (GET /batches/{id}/jobs) before the batch's snapshot is handed over, so that every
   * child's final state comes before the batch's.
   */
  function refused(error) {
    return error.name === "RequestError" && error.status >= 400 && error.status < 500 &&
      error.status !== 408 && error.status !== 429;
  }

  function watchBatch(batchId, options) {
    options = options || {};
    var baseUrl;
    try { baseUrl = apiBase(options); } catch (error) { return Promise.reject(error); }
    var onUpdate = options.onUpdate || function () {};
    var onJob = options.onJob || null;
    var connection = connectionReporter(options.onConnection);
    var signal = options.signal || null;
    var usePolling = options.transport === "poll" || typeof EventSource === "undefined";
    if (options.token) batchTokens[batchId] = options.token;
    if (signal && signal.aborted) return Promise.reject(aborted("batch " + batchId));

    return new Promise(function (resolve, reject) {
      var last = null;
      var seqs = {}; // child job id -> the seq of its last snapshot handed to onJob
      var source = null;
      var timer = null;
      var done = false;
      var pace = new Pace(options.maxAttempts);
      var reader = new Conditional(baseUrl + batchPath(batchId),
        function () { return batchAuthorization(batchId); }, missing);

      function missing() { return jobError("BatchError", "no batch " + batchId); }

      function finish(error, snapshot) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (source) { source.close(); source = null; }
        if (signal) signal.removeEventListener("abort", stop);
        connection("closed");
        if (error) reject(error); else resolve(snapshot);
      }

      function stop() { finish(aborted("batch " + batchId)); }

      function accept(batch) {
        if (done || (last && batch.seq <= last.seq)) return false;
        last = batch;
        call(onUpdate, batch);
        if (TERMINAL[batch.status]) finish(null, batch);
        return true;
      }

      function child(snapshot) {
        if (done || !onJob) return false;
        var had = seqs[snapshot.job_id];
        if (had !== undefined && snapshot.seq <= had) return false;
        seqs[snapshot.job_id] = snapshot.seq;
        call(onJob, snapshot);
        return true;
      }

      function openStream() {
        var query = [];
        // Without onJob the children's events would be sent for nothing: a bar needs the
        // batch's snapshots alone, a small part of the stream of a big batch.
        if (!onJob) query.push("jobs=false");
        // EventSource sends no header: a token goes in the query (kept out of the logs).
        if (batchTokens[batchId]) query.push("token=" + encodeURIComponent(batchTokens[batchId]));
        var url = baseUrl + batchPath(batchId, "/events") + (query.length ? "?" + query.join("&") : "");
        var stream = (source = new EventSource(url));
        var received = false;
        var failures = 0;
        function heard() { received = true; failures = 0; connection("stream"); }
        stream.onopen = function () { connection("stream"); };
        stream.onmessage = function (event) { heard(); accept(JSON.parse(event.data)); };
        stream.addEventListener("job", function (event) { heard(); child(JSON.parse(event.data)); });
        stream.addEventListener("error", function (event) {
          if (stream !== source || done) return;
          // The server's own "error" event (with data): the batch is gone.
          if (event.data) return finish(missing());
          failures += 1;
          if (!givesUp(stream, received, failures)) return;
          stream.close();
          source = null;
          poll();
        });
      }

      // Every child's snapshot, a page at a time, in the batch's order (after: the place
      // of the last child read); resolves with how many were new.
      function pollChildren(after) {
        var url = baseUrl + batchPath(batchId, "/jobs") + "?limit=" + CHILD_PAGE +
          "&after=" + encodeURIComponent(after || 0);
        return fetch(url, { headers: batchAuthorization(batchId), cache: "no-store" })
          .then(function (response) {
            if (response.status === 404) throw missing();
            if (!response.ok) throw requestError(response.status, "HTTP " + response.status);
            return response.json();
          })
          .then(function (page) {
            var taken = page.jobs.filter(child).length;
            var next = page.next_after;
            if (next == null || done) return taken;
            return pollChildren(next).then(function (more) { return taken + more; });
          });
      }

      function poll() {
        if (done) return;
        connection("polling");
        reader.read()
          .then(function (batch) {
            // The batch first, then its children: each is then at least as new as the
            // batch, and a final batch is handed over after every child's final state.
            if (!batch || !onJob || (last && batch.seq <= last.seq)) return batch;
            return pollChildren(null).then(function () { return batch; });
          })
          .then(function (batch) {
            var wait = pace.read(batch ? accept(batch) : false);
            if (!done) timer = setTimeout(poll, wait);
          }, function (error) {
            // No such batch, or refused (a token for another batch, an expired one):
            // asking again will not help. Anything else (5xx, the network) is tried again.
            if (error.name === "BatchError" || refused(error)) return finish(error);
            var wait = pace.failed();
            if (wait === null) {
              return finish(jobError("NetworkError", "gave up on batch " + batchId + " after " +
                pace.failures + " failed polls: " + error.message, last));
            }
            timer = setTimeout(poll, wait);
          });
      }

      if (signal) signal.addEventListener("abort", stop);
      if (usePolling) poll(); else openStream();
    });
  }

  var api = {
    start: start, watch: watch, cancel: control("cancel"), pause: control("pause"),
    resume: control("resume"), session: session, TERMINAL: TERMINAL, baseUrl: ownBase(),
    startBatch: startBatch, watchBatch: watchBatch, cancelBatch: batchControl("cancel"),
    retryBatch: batchControl("retry"),
  };
  api.watchJobs = watchJobs;
  root.jobhub = api;
})(typeof self !== "undefined" ? self : globalThis);
