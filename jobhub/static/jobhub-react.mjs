// jobhub-react.mjs: React hooks that watch jobs live, built on jobhub.js. Types:
// jobhub-react.d.mts. For a bundler (esbuild, Vite, webpack), beside jobhub.mjs and
// jobhub.js, whose polling fallback and resume they use. React 18 or later
// (useSyncExternalStore); tested with React 19.
//
//   const { snapshot, output, logs, error, connection } = useJob(jobId, { token });
//   const { jobs, error, connection } = useJobs({ tag: "user:42", token });
//   const { batch, jobs, error, connection } = useBatch(batchId, { token });
//
// `connection` is "stream" (an EventSource, reconnecting by itself after a cut), "polling"
// (where no stream can be had), or "closed": the job or batch has ended, or there is
// nothing to watch. A hook then makes no request at all, and none once its component
// unmounts.
//
// Components that watch the same job, or the same tag or batch with the same options, share
// one watch: it starts with the first subscriber and stops a tick after the last one
// leaves. The tick carries a watch through React StrictMode's mount, unmount and mount
// again (and a key change that unmounts one component as it mounts another) without
// stopping it and starting it over.
import { useSyncExternalStore } from "react";
import jobhub from "./jobhub.mjs";

// One shared watch per key (see below); removed when it stops.
const shared = new Map();

const CLOSED = "closed";

function firstConnection() {
  return typeof EventSource === "undefined" ? "polling" : "stream";
}

// A watch shared by every component that reads it, and what it has seen: the store that
// useSyncExternalStore reads. `begin(store, signal)` starts the watch; aborting `signal`
// must end all of its network activity.
class SharedWatch {
  constructor(key, initial, begin) {
    this.key = key;
    this.initial = initial;
    this.state = initial;
    this.begin = begin;
    this.listeners = new Set();
    this.controller = null;
    this.stopping = null;
    this.subscribe = this.subscribe.bind(this);
    this.read = this.read.bind(this);
  }

  read() {
    return this.state;
  }

  // A new state object, so that React sees a change (useSyncExternalStore compares with
  // Object.is).
  update(change) {
    this.state = { ...this.state, ...change };
    for (const listener of [...this.listeners]) listener();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    clearTimeout(this.stopping);
    this.stopping = null;
    if (!shared.has(this.key)) shared.set(this.key, this);
    if (this.controller === null) {
      this.controller = new AbortController();
      this.begin(this, this.controller.signal);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.stopping === null) {
        this.stopping = setTimeout(() => this.stop(), 0);
      }
    };
  }

  stop() {
    this.stopping = null;
    if (this.listeners.size > 0) return;
    if (this.controller !== null) this.controller.abort();
    this.controller = null;
    // A later subscriber watches afresh: the job's output is sent again from its first.
    this.state = this.initial;
    if (shared.get(this.key) === this) shared.delete(this.key);
  }
}

function sharedWatch(key, initial, begin) {
  let watch = shared.get(key);
  if (watch === undefined) {
    watch = new SharedWatch(key, initial, begin);
    shared.set(key, watch);
  }
  return watch;
}

// For a hook given nothing to watch (no id yet): no network, ever.
function idle() {
  return () => {};
}

function useShared(key, initial, begin, nothing) {
  const watch = key === null ? null : sharedWatch(key, initial, begin);
  const subscribe = watch === null ? idle : watch.subscribe;
  const read = watch === null ? () => nothing : watch.read;
  return useSyncExternalStore(subscribe, read, read);
}

// Where a watch's promise ends: an abort is the hook's own doing, not an error.
function settle(watch, promise) {
  Promise.resolve(promise).then(
    () => {},
    (error) => {
      if (error && error.name === "AbortError") return;
      watch.update({ error, connection: CLOSED });
    },
  );
}

const NO_JOB = Object.freeze({ snapshot: null, output: [], logs: [], error: null, connection: CLOSED });

/**
 * Follow one job: `{snapshot, output, logs, error, connection}`. `output` holds each chunk
 * the job gave (`await job.output(data)`) and `logs` each line it logged, from its first,
 * in order; `error` is set when the job failed or was canceled (its `.snapshot` is the
 * final one) or when it cannot be watched (no such job, a token that does not open it).
 * options: baseUrl, token (the job's token or a scoped one). A null jobId watches nothing.
 */
export function useJob(jobId, options = {}) {
  const { baseUrl = null, token = null } = options;
  // Not by token: jobhub.js follows each job of a page once (one stream for all, one token
  // per job, the latest given), so two watches of one job would take each other's place.
  const key = jobId ? JSON.stringify(["job", baseUrl, jobId]) : null;
  const initial = { ...NO_JOB, connection: firstConnection() };
  return useShared(key, initial, (watch, signal) => {
    const options = { token, signal, onConnection: (connection) => watch.update({ connection }) };
    if (baseUrl !== null) options.baseUrl = baseUrl;
    options.onUpdate = (snapshot) => watch.update({ snapshot });
    options.onOutput = (data) => watch.update({ output: [...watch.state.output, data] });
    options.onLog = (entry) => watch.update({ logs: [...watch.state.logs, entry] });
    settle(watch, jobhub.watch(jobId, options));
  }, NO_JOB);
}

const NO_JOBS = Object.freeze({ jobs: [], error: null, connection: CLOSED });

/**
 * The live list of a tag's jobs, newest first: `{jobs, error, connection}`. Jobs created
 * with the tag after the list opened join it. options: tag, token (a scoped token that
 * holds the tag, from your backend: POST /tokens), baseUrl. Without a tag it watches
 * nothing (while your page fetches its token, say). The list is never "ended": it stays
 * open while the component is mounted.
 */
export function useJobs(options = {}) {
  const { tag = null, token = null, baseUrl = null } = options;
  const key = tag ? JSON.stringify(["tag", baseUrl, token, tag]) : null;
  const initial = { ...NO_JOBS, connection: firstConnection() };
  return useShared(key, initial, (watch, signal) => {
    const options = { tag, token, signal, onConnection: (connection) => watch.update({ connection }) };
    if (baseUrl !== null) options.baseUrl = baseUrl;
    options.onUpdate = (jobs) => watch.update({ jobs });
    settle(watch, jobhub.watchJobs(options));
  }, NO_JOBS);
}

const NO_BATCH = Object.freeze({ batch: null, jobs: [], error: null, connection: CLOSED });

/**
 * Follow a batch: `{batch, jobs, error, connection}`, with `jobs` the newest snapshot of
 * each of its jobs, in the order they were first seen. Built on jobhub.watchBatch(id,
 * {onUpdate, onJob, onConnection, signal, baseUrl, token}). options: baseUrl, token. A null
 * batchId watches nothing.
 */
export function useBatch(batchId, options = {}) {
  const { baseUrl = null, token = null } = options;
  const key = batchId ? JSON.stringify(["batch", baseUrl, token, batchId]) : null;
  const initial = { ...NO_BATCH, connection: firstConnection() };
  return useShared(key, initial, (watch, signal) => {
    if (typeof jobhub.watchBatch !== "function") {
      watch.update({ error: new TypeError("this jobhub.js has no watchBatch"), connection: CLOSED });
      return;
    }
    const options = { token, signal, onConnection: (connection) => watch.update({ connection }) };
    if (baseUrl !== null) options.baseUrl = baseUrl;
    options.onUpdate = (batch) => watch.update({ batch });
    options.onJob = (snapshot) => {
      const jobs = watch.state.jobs;
      const at = jobs.findIndex((job) => job.job_id === snapshot.job_id);
      if (at === -1) watch.update({ jobs: [...jobs, snapshot] });
      else if (snapshot.seq > jobs[at].seq) {
        const next = jobs.slice();
        next[at] = snapshot;
        watch.update({ jobs: next });
      }
    };
    settle(watch, jobhub.watchBatch(batchId, options));
  }, NO_BATCH);
}
