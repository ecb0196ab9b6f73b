"""jobhub-react.mjs in Chromium: React from node_modules, the page bundled with esbuild at
test time, against a real uvicorn (with API keys and scoped tokens), Redis and ARQ worker
(the session stack's, which runs the jobs)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request
from prometheus_client.parser import text_string_to_metric_families

from jobhub import Settings, create_app
from tests.support.browser import needs_chromium, serve, wait_for
from tests.support.cutting_proxy import CuttingProxy
from tests.support.react import NODE_MODULES, bundle, needs_node_modules
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
    job_id = create(hub, "demo.count", [tag], steps=3, delay=0.3)
    tab.mount("job", {"id": job_id, "token": token(hub, [tag])}, strict=True)
    wait_for(lambda: tab.state()["connection"] == "closed", 30, "the job's end", tab.page)
    assert tab.state()["snapshot"]["result"] == {"steps": 3}
    assert tab.streams_opened() == 1
    other = new_tag()
    tab.page.evaluate("window.unmountHook()")
    tab.mount("jobs", {"tag": other, "token": token(hub, [other])}, strict=True)
    wait_for(lambda: open_streams(hub) == 1, 10, "the tag's stream", tab.page)
    tab.page.wait_for_timeout(1000)
    assert tab.streams_opened() == 2 and open_streams(hub) == 1
    tab.page.evaluate("window.unmountHook()")
    wait_for(lambda: open_streams(hub) == 0, 10, "the stream to end", tab.page)


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
