"""Ship what is tested: the built wheel, installed outside the repository, serves every page.

The rest of the suite runs from an editable install, which reads the static files straight
from the source tree and so cannot see a wheel that lacks some of them. This test builds the
wheel, installs it into a fresh virtualenv in a temporary folder (its dependencies come from
the suite's own environment, so nothing is downloaded but the build backend), starts the web
app from there with that folder as its working directory, and loads the console, the demo
page and ``jobhub.js`` in Chromium: no response of 400 or more, no console error.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response

from jobhub.dev.server import free_port
from tests.support.browser import needs_chromium
from tests.support.servers import ROOT

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv outside the repository with the built wheel installed; returns its
    Python."""
    where = tmp_path_factory.mktemp("wheel")
    dist = where / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
    )
    [wheel] = dist.glob("jobhub-*.whl")
    env_dir = where / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    # The dependencies: the suite's own site-packages, after the venv's own (so the wheel's
    # jobhub wins, and the editable install's finder, loaded only by a .pth of a real site
    # directory, is never loaded).
    [purelib] = (env_dir / "lib").glob("python3*/site-packages")
    (purelib / "suite-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


@pytest.fixture(scope="module")
def wheel_app(
    installed: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    outside = tmp_path_factory.mktemp("outside")
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": ""}
    proc = subprocess.Popen(
        [str(installed), "-m", "uvicorn", "--factory", "jobhub.server.app:create_app",
         "--port", str(port), "--log-level", "warning"],
        cwd=outside,
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the app installed from the wheel exited"
            assert time.monotonic() < deadline, "the app installed from the wheel never answered"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_installed_wheel_is_the_one_serving(installed: Path) -> None:
    where = subprocess.run(
        [str(installed), "-c", "import jobhub; print(jobhub.__file__)"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout.strip()  # fmt: skip
    assert not where.startswith(str(ROOT)), where


def _watched(browser: Browser) -> tuple[Page, list[str]]:
    """A new page, and the list it fills with every failed response and console error."""
    page = browser.new_page()
    problems: list[str] = []

    def on_response(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"{response.status} {response.url}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return page, problems


@pytest.mark.parametrize("path", ["/dashboard", "/"])
def test_pages_from_the_wheel_load_without_a_missing_file(
    browser: Browser, wheel_app: str, path: str
) -> None:
    page, problems = _watched(browser)
    try:
        response = page.goto(wheel_app + path, wait_until="networkidle")
        assert response is not None and response.status == 200
    finally:
        page.close()
    assert problems == []


def test_the_browser_client_from_the_wheel_loads_in_a_page(
    browser: Browser, wheel_app: str
) -> None:
    # Loaded as a page loads it, by a script tag (a bare .js navigation would also make
    # Chromium probe /favicon.ico, which a script is not expected to come with): the demo
    # page's, and once more under its absolute URL.
    page, problems = _watched(browser)
    try:
        page.goto(wheel_app + "/", wait_until="networkidle")
        page.evaluate("delete window.jobhub")
        page.add_script_tag(url=wheel_app + "/static/jobhub.js")
        assert page.evaluate("typeof window.jobhub.watch") == "function"
    finally:
        page.close()
    assert problems == []


@pytest.mark.parametrize(
    "name",
    ["jobhub.mjs", "jobhub.d.ts", "jobhub.d.mts", "jobhub-react.mjs", "jobhub-react.d.mts"],
)
def test_the_wheel_serves_the_es_modules_and_their_types(wheel_app: str, name: str) -> None:
    # What an app's bundler takes from jobhub: the modules beside jobhub.js, and their types.
    response = httpx.get(f"{wheel_app}/static/{name}")
    assert response.status_code == 200, name
    assert response.text == (ROOT / "jobhub" / "static" / name).read_text()
