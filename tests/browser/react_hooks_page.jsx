// The page tests/browser/test_react_hooks.py drives: it mounts one component using a hook
// and keeps, on window, the hook's latest state and every connection state it reported.
import { StrictMode, useEffect } from "react";
import { createRoot } from "react-dom/client";
import { flushSync } from "react-dom";
import { useBatch, useJob, useJobs } from "../../jobhub/static/jobhub-react.mjs";

const HOOKS = {
  job: ({ id, token }) => useJob(id, { token }),
  jobs: ({ tag, token }) => useJobs({ tag, token }),
  batch: ({ id, token }) => useBatch(id, { token }),
  // Two readers of one job in one component, the second without the token (as a child
  // component might be): `shared` says whether they got one state.
  jobTwice: ({ id, token }) => {
    const first = useJob(id, { token });
    const second = useJob(id);
    return { ...first, shared: first === second };
  },
};

// Each connection state the component rendered with, with the job's status beside it.
window.connections = [];
window.hookState = null;

function Probe({ kind, props }) {
  const state = HOOKS[kind](props);
  window.hookState = state;
  const status = state.snapshot ? state.snapshot.status : null;
  useEffect(() => {
    window.connections.push([state.connection, status]);
  }, [state.connection, status]);
  return <pre id="state">{JSON.stringify(state)}</pre>;
}

let root = null;

window.mountHook = (kind, props, strict) => {
  root = createRoot(document.getElementById("root"));
  const probe = <Probe kind={kind} props={props} />;
  flushSync(() => root.render(strict ? <StrictMode>{probe}</StrictMode> : probe));
};

window.unmountHook = () => {
  root.unmount();
  root = null;
};
