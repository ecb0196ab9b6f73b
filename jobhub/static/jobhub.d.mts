// Types for jobhub.mjs: import jobhub, { start, watch, watchBatch, ... } from ".../static/jobhub.mjs"
/// <reference path="./jobhub.d.ts" />

export type Status = jobhub.Status;
export type JobError = jobhub.JobError;
export type Snapshot<Result = unknown> = jobhub.Snapshot<Result>;
export type LogEntry = jobhub.LogEntry;
export type OutputEntry<Output = unknown> = jobhub.OutputEntry<Output>;
export type Gap = jobhub.Gap;
export type StartOptions = jobhub.StartOptions;
export type WatchOptions<Result = unknown, Output = unknown> = jobhub.WatchOptions<Result, Output>;
export type RequestError = jobhub.RequestError;
export type SessionState = jobhub.SessionState;
export type ControlOptions = jobhub.ControlOptions;
export type WatchError<Result = unknown> = jobhub.WatchError<Result>;
export type BatchStatus = jobhub.BatchStatus;
export type BatchCounts = jobhub.BatchCounts;
export type BatchSnapshot = jobhub.BatchSnapshot;
export type BatchJob = jobhub.BatchJob;
export type StartBatchOptions = jobhub.StartBatchOptions;
export type StartedBatch = jobhub.StartedBatch;
export type RetriedBatch = jobhub.RetriedBatch;
export type Connection = jobhub.Connection;
export type WatchBatchOptions<Result = unknown> = jobhub.WatchBatchOptions<Result>;
export type WatchBatchError = jobhub.WatchBatchError;

export declare const start: typeof jobhub.start;
export declare const watch: typeof jobhub.watch;
export declare const cancel: typeof jobhub.cancel;
export declare const pause: typeof jobhub.pause;
export declare const resume: typeof jobhub.resume;
export declare const session: typeof jobhub.session;
export declare const TERMINAL: typeof jobhub.TERMINAL;
export declare const startBatch: typeof jobhub.startBatch;
export declare const watchBatch: typeof jobhub.watchBatch;
export declare const cancelBatch: typeof jobhub.cancelBatch;
export declare const retryBatch: typeof jobhub.retryBatch;
export type WatchJobsOptions<Result = unknown> = jobhub.WatchJobsOptions<Result>;
export declare const watchJobs: typeof jobhub.watchJobs;
declare const api: typeof jobhub;
export default api;
