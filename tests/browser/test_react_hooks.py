"""jobhub-react.mjs in Chromium: React from node_modules, the page bundled with esbuild at
test time, against a real uvicorn (with API keys and scoped tokens), Redis and ARQ worker
(the session stack's, which runs the jobs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from jobhub import Settings, create_app
from tests.support.browser import needs_chromium, serve, wait_for
from tests.support.cutting_proxy import CuttingProxy
from tests.support.react import NODE_MODULES, bundle, needs_node_modules
from tests.support.readme import jsx_block, python_block
from tests.support.servers import ROOT, ThreadedServer

pytestmark = [needs_chromium, needs_node_modules]

KEY = "react-test-key"
API = {"Authorization": f"Bearer {KEY}"}
HERE = Path(__file__).parent
PAGE = '<!doctype html><div id="root"></div><script type="module" src="/page.js"></script>'
FINAL = {"finished", "failed", "canceled"}


@pytest.fixture(scope="module")
def hub(redis_url: str, base_url: str) -> Iterator[ThreadedServer]:
    # base_url: the session stack, whose worker runs the jobs this app enqueues.
    settings = Settings(redis_url=redis_url, api_keys=(KEY,), token_secret="react-secret")
    with ThreadedServer(create_app(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("react") / "page.js"
    return bundle(HERE / "react_hooks_page.jsx", out)


class Tab:
    """A page with the bundle, opened at ``origin``, that counts the requests it makes."""

    def __init__(self, page: Page, script: str, origin: str) -> None:
        self.page = page
        self.requests: list[Request] = []
        page.on("request", lambda request: self.requests.append(request))
        serve(page, origin + "/", PAGE)
        serve(page, origin + "/page.js", script, "text/javascript")
        page.goto(origin + "/")
        page.wait_for_function("typeof window.mountHook === 'function'")

    def mount(self, kind: str, props: dict[str, Any], strict: bool = False) -> None:
        self.page.evaluate("([k, p, s]) => window.mountHook(k, p, s)", [kind, props, strict])

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.page.evaluate("window.hookState")
        return state

    def connections(self) -> list[list[Any]]:
        seen: list[list[Any]] = self.page.evaluate("window.connections")
        return seen

    def streams_opened(self) -> int:
        return sum(1 for r in self.requests if r.resource_type == "eventsource")

    def api_requests(self) -> list[str]:
        # The page's own two (itself, its script) are answered by the test, not the API.
        return [r.url for r in self.requests if not r.url.endswith(("/", "/page.js"))]


@pytest.fixture
def tab(browser: Browser, hub: ThreadedServer, script: str) -> Iterator[Tab]:
    context = browser.new_context()
    yield Tab(context.new_page(), script, hub.base_url)
    context.close()


def open_streams(hub: ThreadedServer) -> float:
    text = httpx.get(hub.base_url + "/metrics", headers=API).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jobhub_open_streams":
                return float(sample.value)
    raise AssertionError("no jobhub_open_streams")


def token(hub: ThreadedServer, tags: list[str]) -> str:
    body = {"scope": {"tags": tags}, "actions": ["read"]}
    answer = httpx.post(hub.base_url + "/tokens", json=body, headers=API)
    assert answer.status_code == 201, answer.text
    minted: str = answer.json()["token"]
    return minted


def create(hub: ThreadedServer, function: str, tags: list[str], **kwargs: Any) -> str:
    body = {"function": function, "kwargs": kwargs, "tags": tags}
    answer = httpx.post(hub.base_url + "/jobs", json=body, headers=API)
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


def new_tag() -> str:
    return f"user:{uuid.uuid4().hex[:10]}"


def test_use_jobs_shows_jobs_created_after_it_mounted_and_never_another_tags(
    tab: Tab, hub: ThreadedServer
) -> None:
    mine, theirs = new_tag(), new_tag()
    # The token could read both tags: what keeps the other's jobs out is the list's tag.
    tab.mount("jobs", {"tag": mine, "token": token(hub, [mine, theirs])})
    wait_for(lambda: open_streams(hub) >= 1, 10, "the tag's stream", tab.page)
    assert tab.state()["jobs"] == []
    ours = {create(hub, "demo.noop", [mine]) for _ in range(3)}
    others = {create(hub, "demo.noop", [theirs]) for _ in range(2)}
    ours.add(create(hub, "demo.count", [mine, "project:7"], steps=2, delay=0.1))

    def all_ours_finished() -> bool:
        jobs = tab.state()["jobs"]
        return {j["job_id"] for j in jobs} == ours and all(j["status"] == "finished" for j in jobs)

    wait_for(all_ours_finished, 30, "the tag's jobs, finished", tab.page)
    tab.page.wait_for_timeout(500)  # time for anything of the other tag to show up wrongly
    state = tab.state()
    assert {j["job_id"] for j in state["jobs"]} == ours and not others & ours
    assert state["connection"] == "stream" and state["error"] is None
    assert all(mine in j["tags"] for j in state["jobs"])
    created = [j["created_at"] for j in state["jobs"]]
    assert created == sorted(created, reverse=True)  # newest first
    tab.page.evaluate("window.unmountHook()")


def test_use_job_shows_the_final_result_then_makes_no_request(
    tab: Tab, hub: ThreadedServer
) -> None:
    tag = new_tag()
    job_id = create(hub, "demo.tokens", [tag], count=20, delay=0.05)
    tab.mount("job", {"id": job_id, "token": token(hub, [tag])})
    wait_for(lambda: tab.state()["connection"] == "closed", 30, "the job's end", tab.page)
    state = tab.state()
    assert state["snapshot"]["status"] == "finished"
    assert state["snapshot"]["result"] == "".join(f"w{i} " for i in range(20))
    assert state["output"] == [f"w{i} " for i in range(20)]
    assert [log["message"] for log in state["logs"]] == ["10 words so far", "20 words so far"]
    assert state["error"] is None
    assert tab.streams_opened() == 1
    made = len(tab.api_requests())
    tab.page.wait_for_timeout(3000)
    assert tab.api_requests()[made:] == []  # no stream reopened, no poll
    wait_for(lambda: open_streams(hub) == 0, 10, "the server to see the stream end", tab.page)


def test_unmounting_closes_the_stream_on_the_server(tab: Tab, hub: ThreadedServer) -> None:
    tag = new_tag()
    tab.mount("jobs", {"tag": tag, "token": token(hub, [tag])})
    wait_for(lambda: open_streams(hub) == 1, 10, "the tag's stream", tab.page)
    tab.page.evaluate("window.unmountHook()")
    wait_for(lambda: open_streams(hub) == 0, 10, "the server to see the watch end", tab.page)
    made = len(tab.api_requests())
    tab.page.wait_for_timeout(2000)
    assert tab.api_requests()[made:] == []


def test_strict_mode_double_mount_opens_one_stream(tab: Tab, hub: ThreadedServer) -> None:
    tag = new_tag()
    job_id = create(hub, "demo.tokens", [tag], count=10, delay=0.1)
    tab.mount("job", {"id": job_id, "token": token(hub, [tag])}, strict=True)
    wait_for(lambda: tab.state()["connection"] == "closed", 30, "the job's end", tab.page)
    state = tab.state()
    assert state["snapshot"]["status"] == "finished"
    assert state["output"] == [f"w{i} " for i in range(10)]  # each once: no second watch
    assert tab.streams_opened() == 1
    other = new_tag()
    tab.page.evaluate("window.unmountHook()")
    tab.mount("jobs", {"tag": other, "token": token(hub, [other])}, strict=True)
    wait_for(lambda: open_streams(hub) == 1, 10, "the tag's stream", tab.page)
    tab.page.wait_for_timeout(1000)
    assert tab.streams_opened() == 2 and open_streams(hub) == 1
    tab.page.evaluate("window.unmountHook()")
    wait_for(lambda: open_streams(hub) == 0, 10, "the stream to end", tab.page)


def test_components_reading_one_job_share_one_watch(tab: Tab, hub: ThreadedServer) -> None:
    tag = new_tag()
    job_id = create(hub, "demo.count", [tag], steps=3, delay=0.2)
    tab.mount("jobTwice", {"id": job_id, "token": token(hub, [tag])})
    wait_for(lambda: tab.state()["connection"] == "closed", 30, "the job's end", tab.page)
    state = tab.state()
    assert state["shared"] is True and state["snapshot"]["result"] == {"steps": 3}
    assert tab.streams_opened() == 1


def test_use_jobs_with_a_token_without_the_tag_reports_403_and_stops(
    tab: Tab, hub: ThreadedServer
) -> None:
    tab.mount("jobs", {"tag": new_tag(), "token": token(hub, [new_tag()])})
    wait_for(lambda: tab.state()["error"] is not None, 15, "the refusal", tab.page)
    assert tab.state()["connection"] == "closed" and tab.state()["jobs"] == []
    assert tab.page.evaluate("window.hookState.error.status") == 403
    made = len(tab.api_requests())
    tab.page.wait_for_timeout(2000)
    assert tab.api_requests()[made:] == []  # a refusal is not retried


def test_a_proxy_cutting_the_stream_every_2_s_is_a_reconnect_not_the_end(
    browser: Browser, hub: ThreadedServer, script: str
) -> None:
    tag = new_tag()
    with CuttingProxy("127.0.0.1", hub.port, cut_after=2.0) as proxy:
        context = browser.new_context()
        try:
            tab = Tab(context.new_page(), script, proxy.base_url)
            job_id = create(hub, "demo.tokens", [tag], count=120, delay=0.1)
            tab.mount("job", {"id": job_id, "token": token(hub, [tag])})
            wait_for(lambda: tab.state()["connection"] == "closed", 60, "the job's end", tab.page)
            state = tab.state()
            seen = tab.connections()
        finally:
            context.close()
        # The browser waits 1-4 s (the stream's retry field) before it reconnects.
        assert proxy.cuts >= 2 and tab.streams_opened() >= 3
    assert state["snapshot"]["status"] == "finished" and state["error"] is None
    # Each word once, in order, across the cuts.
    assert state["output"] == [f"w{i} " for i in range(120)]
    assert state["snapshot"]["result"] == "".join(state["output"])
    # "closed" only with the job's end, never while it ran.
    assert seen[-1] == ["closed", "finished"]
    assert all(status in FINAL for connection, status in seen if connection == "closed")


def test_use_batch_follows_a_batch_to_its_end(tab: Tab, hub: ThreadedServer) -> None:
    answer = httpx.post(
        hub.base_url + "/batches",
        json={"jobs": [{"function": "demo.count", "kwargs": {"steps": 2, "delay": 0.1}}] * 3},
        headers=API,
    )
    assert answer.status_code in (201, 202), answer.text
    batch_id = answer.json()["batch_id"]
    tab.mount("batch", {"id": batch_id, "token": KEY})
    wait_for(lambda: tab.state()["connection"] == "closed", 30, "the batch's end", tab.page)
    state = tab.state()
    assert state["error"] is None and state["batch"]["batch_id"] == batch_id
    assert len(state["jobs"]) == 3 and all(j["status"] == "finished" for j in state["jobs"])
    made = len(tab.api_requests())
    tab.page.wait_for_timeout(2000)
    assert tab.api_requests()[made:] == []


def test_the_type_declarations_check(tmp_path: Path) -> None:
    """jobhub-react.d.mts and jobhub.d.mts, used as an app would, pass TypeScript's strict
    check; a misuse does not."""
    static = ROOT / "jobhub" / "static"
    app = tmp_path / "app.mts"
    app.write_text(
        "import { useJob, useJobs, useBatch, type Connection }"
        f' from "{static}/jobhub-react.mjs";\n'
        f'import {{ watchJobs, type Snapshot }} from "{static}/jobhub.mjs";\n'
        "const job = useJob<{ steps: number }, string>('j1', { token: 't' });\n"
        "const steps: number | undefined = job.snapshot?.result?.steps;\n"
        "const chunks: string[] = job.output;\n"
        "const { jobs, connection } = useJobs({ tag: 'user:42', token: 't' });\n"
        "const first: Snapshot | undefined = jobs[0];\n"
        "const c: Connection = connection;\n"
        "const batch = useBatch('b1');\n"
        "const ended: boolean = batch.connection === 'closed' && batch.error === null;\n"
        "const stop = new AbortController();\n"
        "watchJobs({ tag: 'user:42', signal: stop.signal, onUpdate: (list) => list.length,\n"
        "  onConnection: (state) => state === 'polling' }).catch(() => stop.abort());\n"
        "export { steps, chunks, first, c, ended };\n"
    )
    tsc = NODE_MODULES / ".bin" / "tsc"
    flags = ["--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
             "--lib", "es2022,dom", "--types", ""]  # fmt: skip
    checked = subprocess.run([str(tsc), *flags, str(app)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    app.write_text(
        f'import {{ useJob }} from "{static}/jobhub-react.mjs";\n'
        "const job = useJob('j1');\nconst wrong: number = job.connection;\nexport { wrong };\n"
    )
    refused = subprocess.run([str(tsc), *flags, str(app)], capture_output=True, text=True)
    assert refused.returncode != 0 and "TS2322" in refused.stdout, refused.stdout


APP_PAGE = '<!doctype html><div id="root"></div><script type="module" src="/main.js"></script>'
APP_MAIN = """
import { createRoot } from "react-dom/client";
import { MyJobs } from "./MyJobs.jsx";
import { JobProgress } from "./JobProgress.jsx";
const given = new URLSearchParams(location.search);
createRoot(document.getElementById("root")).render(<>
  <MyJobs />
  <JobProgress jobId={given.get("job")} token={given.get("token")} baseUrl={given.get("hub")} />
</>);
"""


class Site:
    """The app's own web server: its page and bundle (``files``, by path) and backend.py's
    routes. A real server: Chromium keeps a routed page from calling a loopback address."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, str]] = {}
        self.backend: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.files:
            body, media_type = self.files[scope["path"]]
            await Response(body, media_type=media_type)(scope, receive, send)
        else:
            assert self.backend is not None
            await self.backend(scope, receive, send)


def test_the_docs_components_run_as_written(
    browser: Browser, redis_url: str, base_url: str, tmp_path: Path
) -> None:
    """The README's MyJobs.jsx, with the token from its backend.py route, and the React
    page's JobProgress.jsx, bundled as an app would and run on the app's origin against
    jobhub on another (JOBHUB_CORS_ORIGINS)."""
    site = Site()
    with ThreadedServer(Starlette(routes=[Mount("/", app=site)])) as app:
        # localhost: another origin than jobhub's 127.0.0.1.
        origin = f"http://localhost:{app.port}"
        settings = Settings(
            redis_url=redis_url,
            api_keys=(KEY,),
            token_secret="react-secret",
            cors_origins=(origin,),
        )
        with ThreadedServer(create_app(settings)) as hub:
            code = python_block("backend.py").replace('"http://127.0.0.1:8000"', repr(hub.base_url))
            backend = types.ModuleType("backend")
            code = code.replace('"change-me"', repr(KEY))
            exec(compile(code, "backend.py", "exec"), vars(backend))
            site.backend = backend.app
            _run_the_docs_components(browser, hub, site, origin, tmp_path)


def _run_the_docs_components(
    browser: Browser, hub: ThreadedServer, site: Site, origin: str, where: Path
) -> None:
    user = uuid.uuid4().hex[:10]
    tag = f"user:{user}"  # what backend.py scopes the token to for this user
    for name in ("jobhub.js", "jobhub.mjs", "jobhub-react.mjs"):
        shutil.copy(ROOT / "jobhub" / "static" / name, where / name)
    my_jobs = jsx_block("MyJobs.jsx").replace('"http://127.0.0.1:8000"', repr(hub.base_url))
    (where / "MyJobs.jsx").write_text(my_jobs)
    (where / "JobProgress.jsx").write_text(jsx_block("JobProgress.jsx"))
    (where / "main.jsx").write_text(APP_MAIN)
    script = bundle(where / "main.jsx", where / "main.js")

    before = create(hub, "demo.noop", [tag])
    words = create(hub, "demo.tokens", [tag], count=15, delay=0.05)
    context = browser.new_context()
    try:
        page = context.new_page()
        site.files["/"] = (APP_PAGE, "text/html")
        site.files["/main.js"] = (script, "text/javascript")
        # backend.py's route answers for the user its header names: as if signed in.
        page.route(
            origin + "/jobhub-token",
            lambda route: route.continue_(headers={**route.request.headers, "X-User": user}),
        )
        query = urlencode({"job": words, "token": token(hub, [tag]), "hub": hub.base_url})
        page.goto(f"{origin}/?{query}")
        items = page.locator("li")
        wait_for(lambda: items.count() >= 2, 20, "the jobs started before", page)
        later = {create(hub, "demo.noop", [tag]) for _ in range(2)}
        create(hub, "demo.noop", [f"user:{uuid.uuid4().hex[:10]}"])  # someone else's
        expected = sorted(["demo.noop: finished"] * 3 + ["demo.tokens: finished"])
        wait_for(lambda: sorted(items.all_inner_texts()) == expected, 30, "every job", page)
        assert len({before, words, *later}) == 4
        result = "".join(f"w{i} " for i in range(15))
        wait_for(lambda: page.locator("output").count() == 1, 30, "the job's result", page)
        assert page.locator("output").inner_text() == json.dumps(result)
        assert page.locator("pre").inner_text().strip() == result.strip()
        assert page.locator("section").get_attribute("data-connection") == "closed"
    finally:
        context.close()
