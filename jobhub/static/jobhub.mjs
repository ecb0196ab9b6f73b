// jobhub.js as an ES module: import { start, watch } from "/static/jobhub.mjs"
// Types: jobhub.d.mts. Set the API's address for every call with `jobhub.baseUrl = "..."`
// on the default export.
import "./jobhub.js";

const jobhub = globalThis.jobhub;
// The API is beside this module (<base>/static/jobhub.mjs): a surer guide than the stack
// trace jobhub.js reads when it is evaluated as a module. A bundled copy keeps that guess.
const served = /^(.*)\/static\/jobhub\.mjs$/.exec(import.meta.url.split(/[?#]/)[0]);
if (served) jobhub.baseUrl = served[1];

const { start, watch, cancel, pause, resume, session, TERMINAL } = jobhub;
export { start, watch, cancel, pause, resume, session, TERMINAL };
const { startBatch, watchBatch, cancelBatch, retryBatch } = jobhub;
export { startBatch, watchBatch, cancelBatch, retryBatch };
// The live list of a tag's jobs (GET /events?tag=).
export const watchJobs = jobhub.watchJobs;
export default jobhub;
