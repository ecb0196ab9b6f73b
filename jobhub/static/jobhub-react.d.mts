// Types for jobhub-react.mjs: import { useJob, useJobs, useBatch } from ".../jobhub-react.mjs"
import type { Connection, LogEntry, Snapshot } from "./jobhub.mjs";

export type { Connection };

export interface HookOptions {
  /** Where jobhub is, e.g. "https://jobs.example.com/hub"; default: jobhub.baseUrl. */
  baseUrl?: string | null;
  /** A job's token or a scoped token (POST /tokens), where the API needs one. */
  token?: string | null;
}

/** What useJob() returns; a new object whenever any of it changes. */
export interface JobState<Result = unknown, Output = unknown> {
  /** The newest snapshot; null until the first arrives. */
  snapshot: Snapshot<Result> | null;
  /** Each chunk the job gave (`await job.output(data)`), from its first, in order. */
  output: Output[];
  /** Each line the job logged, from its first, in order. */
  logs: LogEntry[];
  /** Set when the job failed or was canceled (its .snapshot is the final one), or when it
   *  cannot be watched (no such job, a token that does not open it). */
  error: (Error & { snapshot?: Snapshot<Result> | null; status?: number }) | null;
  /** "closed" once the job ended: no request is made after that. */
  connection: Connection;
}

/** Follow one job until it ends; a null or empty jobId watches nothing. */
export declare function useJob<Result = unknown, Output = unknown>(
  jobId: string | null | undefined,
  options?: HookOptions,
): JobState<Result, Output>;

export interface JobsOptions extends HookOptions {
  /** The tag whose jobs to list ("user:42"); without one, nothing is watched. */
  tag?: string | null;
}

/** What useJobs() returns. */
export interface JobsState<Result = unknown> {
  /** The newest snapshot of each of the tag's jobs, newest job first. */
  jobs: Snapshot<Result>[];
  /** Set when the list cannot be had (403: the token does not hold the tag). */
  error: (Error & { status?: number }) | null;
  connection: Connection;
}

/** The live list of a tag's jobs, jobs created later included. */
export declare function useJobs<Result = unknown>(options?: JobsOptions): JobsState<Result>;

/** A batch as jobhub.watchBatch reports it. */
export interface BatchSnapshot {
  batch_id: string;
  [field: string]: unknown;
}

/** What useBatch() returns. */
export interface BatchState<Result = unknown> {
  batch: BatchSnapshot | null;
  /** The newest snapshot of each of the batch's jobs, in the order first seen. */
  jobs: Snapshot<Result>[];
  error: Error | null;
  /** "closed" once the batch ended. */
  connection: Connection;
}

/** Follow a batch until it ends; a null or empty batchId watches nothing. */
export declare function useBatch<Result = unknown>(
  batchId: string | null | undefined,
  options?: HookOptions,
): BatchState<Result>;
