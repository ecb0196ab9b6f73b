// Types for jobhub.mjs: import jobhub, { start, watch, cancel, pause, resume, session, TERMINAL } from ".../static/jobhub.mjs"
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

export declare const start: typeof jobhub.start;
export declare const watch: typeof jobhub.watch;
export declare const cancel: typeof jobhub.cancel;
export declare const pause: typeof jobhub.pause;
export declare const resume: typeof jobhub.resume;
export declare const session: typeof jobhub.session;
export declare const TERMINAL: typeof jobhub.TERMINAL;
export type Connection = jobhub.Connection;
export type WatchJobsOptions<Result = unknown> = jobhub.WatchJobsOptions<Result>;
export declare const watchJobs: typeof jobhub.watchJobs;
declare const api: typeof jobhub;
export default api;
