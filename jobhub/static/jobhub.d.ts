// Types for jobhub.js loaded as a classic script (<script src>, importScripts), which
// defines the global `jobhub`. In TypeScript: /// <reference path="jobhub.d.ts" />
// For the ES module, jobhub.mjs, see jobhub.d.mts.

declare namespace jobhub {
  /** A job's status; `finished`, `failed` and `canceled` are final. */
  type Status = "queued" | "started" | "running" | "paused" | "finished" | "failed" | "canceled";

  /** Why a job failed: the exception's class name and its message. */
  interface JobError {
    type: string;
    detail: string;
  }

  /** A job's whole state at one moment, as GET /jobs/{id} and the streams send it. */
  interface Snapshot<Result = unknown> {
    job_id: string;
    /** The job function's registered name, e.g. "demo.count". */
    function: string;
    status: Status;
    /** 0 to 100. */
    percent: number;
    message: string;
    /** What the job returned, once `finished`; null before. */
    result: Result | null;
    error: JobError | null;
    /** 1, then one more for each retry. */
    attempt: number;
    /** When a deferred job (or its next try) is due to start (ISO 8601, UTC); null when it
     *  may start at once. */
    start_at: string | null;
    /** The job this one retries (POST /jobs/{id}/retry), if any. */
    retry_of: string | null;
    /** Labels given when the job was created ("user:42"); GET /jobs?tag= lists by them. */
    tags: string[];
    /** Increases by one with every change of the job: a higher seq is newer. */
    seq: number;
    /** ISO 8601, UTC ("2026-11-22T05:16:26.856729Z"). */
    created_at: string;
    updated_at: string;
    /** The batch the job belongs to (POST /batches), if any. */
    batch_id: string | null;
    /** How much the job counts in its batch's percent (1 unless given). */
    weight: number;
  }

  /** A line the job logged (`await job.log(message, level)`); a failed job's traceback
   *  comes as one with level "error". */
  interface LogEntry {
    /** Its place in the job's output, a Redis stream id ("1700000000000-3"). */
    id: string;
    kind: "log";
    level: "debug" | "info" | "warning" | "error";
    message: string;
    /** When the job wrote it (ISO 8601, UTC). */
    at: string;
  }

  /** A chunk of the job's partial result (`await job.output(data)`), as the job gave it. */
  interface OutputEntry<Output = unknown> {
    /** Its place in the job's output, a Redis stream id ("1700000000000-3"). */
    id: string;
    kind: "output";
    data: Output;
    /** When the job wrote it (ISO 8601, UTC). */
    at: string;
  }

  /** Entries of the job's output that never reached this page: the job's capped output
   *  (JOBHUB_OUTPUT_LIMIT, the newest kept) dropped them before they were read. */
  interface Gap {
    /** How many, exactly. */
    missed: number;
    /** An id carrying the first missed entry's ordinal (the part after "-"). */
    from: string;
    /** An id carrying the last missed entry's ordinal; what follows comes after it. */
    to: string;
  }

  interface StartOptions {
    /** Positional arguments of the job function. */
    args?: unknown[];
    /** Keyword arguments of the job function. */
    kwargs?: Record<string, unknown>;
    /** Your own id ([A-Za-z0-9_-]{1,64}): starting it again returns the same job. */
    jobId?: string;
    /** Tags for the job (a scoped token adds its own). */
    tags?: string[];
    /** A scoped token with "start", minted by the page's backend: the job is started as
     * its user, and opened with it afterwards. */
    token?: string;
    /** Where the API needs one; only in trusted code (a page would give it away). */
    apiKey?: string;
    /** Where jobhub is, e.g. "https://jobs.example.com/hub"; default: jobhub.baseUrl. */
    baseUrl?: string;
  }

  interface WatchOptions<Result = unknown, Output = unknown> {
    /** Called with every new snapshot, in seq order, the current one first. */
    onUpdate?: (snapshot: Snapshot<Result>) => void;
    /** Called with each chunk of the job's output, from its first, once each and in order
     *  (a page that watches again after a refresh gets them all again). */
    onOutput?: (data: Output, entry: OutputEntry<Output>) => void;
    /** Called with each line the job logged, from its first, once each and in order. */
    onLog?: (entry: LogEntry) => void;
    /** Called in the place of entries the job's capped output dropped before this page
     *  read them; without it, console.warn says how many were missed. */
    onGap?: (gap: Gap) => void;
    /** Milliseconds before watch() rejects with a "TimeoutError"; the job goes on. */
    timeout?: number;
    /** Failed polls in a row before watch() rejects with a "NetworkError" (default 10). */
    maxAttempts?: number;
    /** Where jobhub is, e.g. "https://jobs.example.com/hub"; default: jobhub.baseUrl. */
    baseUrl?: string;
    /** "auto" (default): one EventSource for all of the page's jobs, polling if it fails;
     *  "poll": poll GET /jobs/{id} only, and GET /jobs/{id}/output where onOutput or onLog
     *  is given (for proxies that buffer event streams). */
    transport?: "auto" | "poll";
    /** The job's token (response header Jobhub-Token), where the API needs one and this
     *  page did not start the job itself; start() keeps the tokens it is handed. */
    token?: string;
    /** Abort to stop watching: no stream, no timer is left, and watch() rejects with an
     *  "AbortError". */
    signal?: AbortSignal;
    /** Called when the way the job is followed changes; "closed" once it ended. */
    onConnection?: (connection: Connection) => void;
  }

  /** How a watch follows its job or list: an EventSource (reconnecting by itself after a
   *  cut), polling where no stream can be had, or "closed": it has ended. */
  type Connection = "stream" | "polling" | "closed";

  interface WatchJobsOptions<Result = unknown> {
    /** The tag whose jobs to list ("user:42"). */
    tag: string;
    /** A scoped token (POST /tokens) that holds the tag, where the API needs one. */
    token?: string;
    /** Called with the whole list, newest first, after every change. */
    onUpdate?: (jobs: Snapshot<Result>[]) => void;
    /** Called with each new snapshot of any of the tag's jobs. */
    onJob?: (snapshot: Snapshot<Result>) => void;
    onConnection?: (connection: Connection) => void;
    /** Abort to stop: watchJobs() then rejects with an "AbortError". */
    signal?: AbortSignal;
    /** Failed polls in a row before it rejects with a "NetworkError" (default 10). */
    maxAttempts?: number;
    /** "auto" (default): GET /events?tag=, polling if it fails; "poll": polling only. */
    transport?: "auto" | "poll";
    baseUrl?: string;
  }

  /** How start(), cancel(), pause() and resume() reject: the API refused (error.status is
   *  the HTTP status, error.body its JSON answer: a 409 carries the job's snapshot). */
  interface RequestError extends Error {
    name: "RequestError";
    status: number;
    body: unknown;
    snapshot: null;
  }

  /** GET /session: this browser's standing with the API. */
  interface SessionState {
    /** Whether the API needs credentials (JOBHUB_API_KEYS). */
    secured: boolean;
    /** Whether this browser signed in to the console (its session cookie). */
    signed_in: boolean;
    /** The session's CSRF token; jobhub.js sends it with this page's changes. */
    csrf: string | null;
    /** Whether ended jobs are archived in SQL (JOBHUB_ARCHIVE_URL). */
    archive: boolean;
  }

  interface ControlOptions {
    /** The job's token, where this page did not start the job itself. */
    token?: string;
    /** Where the API needs one; only in trusted code (a page would give it away). */
    apiKey?: string;
    /** Where jobhub is; default: jobhub.baseUrl. */
    baseUrl?: string;
  }

  /** How watch() rejects. "JobError": the job failed or was canceled (or does not exist);
   *  "TimeoutError": options.timeout passed; "NetworkError": maxAttempts polls failed;
   *  "AbortError": options.signal was aborted.
   *  snapshot is the last one seen, if any. */
  interface WatchError<Result = unknown> extends Error {
    name: "JobError" | "TimeoutError" | "NetworkError" | "AbortError";
    snapshot: Snapshot<Result> | null;
  }

  /** POST /jobs: resolves with the job's first snapshot (status "queued"). */
  function start<Result = unknown>(fn: string, options?: StartOptions): Promise<Snapshot<Result>>;

  /** POST /jobs/{id}/cancel, with the job's token, an API key or the console's session:
   *  resolves with the job's snapshot. */
  function cancel<Result = unknown>(jobId: string, options?: ControlOptions): Promise<Snapshot<Result>>;
  /** POST /jobs/{id}/pause (a running job waits at its next progress report). */
  function pause<Result = unknown>(jobId: string, options?: ControlOptions): Promise<Snapshot<Result>>;
  /** POST /jobs/{id}/resume (a paused job goes on). */
  function resume<Result = unknown>(jobId: string, options?: ControlOptions): Promise<Snapshot<Result>>;

  /** GET /session; its CSRF token, if signed in, is kept for this page's changes. */
  function session(options?: { baseUrl?: string }): Promise<SessionState>;

  /** Follow a job until it ends: resolves with its final snapshot when it finishes. */
  function watch<Result = unknown, Output = unknown>(
    jobId: string,
    options?: WatchOptions<Result, Output>,
  ): Promise<Snapshot<Result>>;

  /** Keep the live list of a tag's jobs (GET /events?tag=, polling GET /jobs?tag= where
   *  the stream cannot be had). Never resolves: rejects with an "AbortError" once
   *  options.signal is aborted, a "RequestError" when the API refuses (403: a token without
   *  the tag), a "NetworkError" after maxAttempts failed polls. */
  function watchJobs<Result = unknown>(options: WatchJobsOptions<Result>): Promise<never>;

  // ---- Batches: many jobs watched as one ----

  /** A batch's status: `active` until it is sealed and every child has ended, then
   *  `finished` (all finished), `failed` (any failed) or `canceled`. */
  type BatchStatus = "active" | "finished" | "failed" | "canceled";

  /** How many of a batch's children are in each status; they always sum to `total`. */
  type BatchCounts = Record<Status, number>;

  /** A batch's whole state at one moment, as GET /batches/{id} and its stream send it. */
  interface BatchSnapshot {
    batch_id: string;
    status: BatchStatus;
    /** How many children the batch has. */
    total: number;
    counts: BatchCounts;
    /** 0 to 100: the children's percents, weighted (an ended child counts 100). */
    percent: number;
    /** Whether children can no longer be added (a batch started without `open` is). */
    sealed: boolean;
    /** Increases with every change of the batch: a higher seq is newer. */
    seq: number;
    /** ISO 8601, UTC. */
    created_at: string;
    updated_at: string;
  }

  /** One child of startBatch(): a job as start() takes it. */
  interface BatchJob {
    /** The job function's registered name, e.g. "demo.count". */
    function: string;
    args?: unknown[];
    kwargs?: Record<string, unknown>;
    /** Your own id for this child ([A-Za-z0-9_-]{1,64}). */
    jobId?: string;
    /** Its share of the batch's percent (default 1). */
    weight?: number;
    /** Tags for this job (a scoped token adds its own). */
    tags?: string[];
  }

  interface StartBatchOptions {
    /** Your own id for the batch. */
    batchId?: string;
    /** Keep the batch open for more children (POST /batches/{id}/jobs) until it is sealed. */
    open?: boolean;
    /** Where one signed webhook goes when the batch ends. */
    callbackUrl?: string;
    /** A scoped token with "start", minted by the page's backend: the batch is started as
     * its user, and opened with it afterwards. */
    token?: string;
    /** Where the API needs one; only in trusted code (a page would give it away). */
    apiKey?: string;
    /** Where jobhub is; default: jobhub.baseUrl. */
    baseUrl?: string;
  }

  /** POST /batches' answer. */
  interface StartedBatch {
    batch_id: string;
    /** The children's job ids, in the order given. */
    job_ids: string[];
    /** The batch's first snapshot. */
    batch: BatchSnapshot;
  }

  /** POST /batches/{id}/retry's answer. */
  interface RetriedBatch {
    /** The new children's job ids. */
    job_ids: string[];
    batch: BatchSnapshot;
  }

  interface WatchBatchOptions<Result = unknown> {
    /** Called with every newer batch snapshot, in seq order. */
    onUpdate?: (batch: BatchSnapshot) => void;
    /** Called with every newer snapshot of a child, never one older than the last given
     *  for that child; every child's final state comes before the batch's. */
    onJob?: (snapshot: Snapshot<Result>) => void;
    /** Called when the way the batch is followed changes. */
    onConnection?: (state: Connection) => void;
    /** Stops the watch: watchBatch() then rejects with an "AbortError". */
    signal?: AbortSignal;
    /** Where jobhub is; default: jobhub.baseUrl. */
    baseUrl?: string;
    /** The batch's token (POST /batches' Jobhub-Token), where this page did not start it. */
    token?: string;
    /** "auto" (default): the batch's stream, polling if it fails; "poll": polling only. */
    transport?: "auto" | "poll";
    /** Failed polls in a row before watchBatch() rejects with a "NetworkError" (default 10). */
    maxAttempts?: number;
  }

  /** How watchBatch() rejects: "BatchError" (no such batch), "AbortError" (options.signal),
   *  "RequestError" (the API refused: `status`, e.g. 403 for a token of another batch),
   *  "NetworkError" (maxAttempts polls failed). */
  interface WatchBatchError extends Error {
    name: "BatchError" | "AbortError" | "RequestError" | "NetworkError";
    /** The HTTP status of a "RequestError". */
    status?: number;
  }

  /** POST /batches: every child is created, or none; resolves with the batch's ids and
   *  first snapshot. startBatch() keeps the batch's token for the calls below. */
  function startBatch(jobs: BatchJob[], options?: StartBatchOptions): Promise<StartedBatch>;

  /** Follow a batch until it ends: resolves with its final snapshot, whatever its status. */
  function watchBatch<Result = unknown>(
    batchId: string,
    options?: WatchBatchOptions<Result>,
  ): Promise<BatchSnapshot>;

  /** POST /batches/{id}/cancel: every active child is canceled; the batch ends `canceled`.
   *  Resolves with the batch's snapshot. */
  function cancelBatch(batchId: string, options?: ControlOptions): Promise<BatchSnapshot>;
  /** POST /batches/{id}/retry: the failed and canceled children run again, each as a new
   *  job in its place (`retry_of` set). Resolves with the new jobs' ids and the batch. */
  function retryBatch(batchId: string, options?: ControlOptions): Promise<RetriedBatch>;

  /** The final statuses, as keys. */
  const TERMINAL: { readonly finished: true; readonly failed: true; readonly canceled: true };

  /** Where calls without options.baseUrl go: by default beside the script
   *  (<base>/static/jobhub.js), else the page's origin; null in a Worker made from a data:
   *  URL, where it must be set. Assign it once to point every call elsewhere. */
  let baseUrl: string | null;
}
