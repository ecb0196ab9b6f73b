// jobhub.js as an ES module: import { start, watch } from "/static/jobhub.mjs"
import "./jobhub.js";

const { start, watch, TERMINAL } = globalThis.jobhub;
export { start, watch, TERMINAL };
export default globalThis.jobhub;
