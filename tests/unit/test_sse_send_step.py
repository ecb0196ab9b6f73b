"""The one private name of sse-starlette that jobhub touches: its send step.

``EventStream`` replaces ``EventSourceResponse._send_with_timeout`` to drop the per-send
cancel scope (jobhub/server/streaming/sse.py). These tests fail the day a new sse-starlette
renames the step, changes its arguments or stops sending every body chunk through it; the
locked version (constraints.txt) is the one the replacement was written against.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

from sse_starlette import EventSourceResponse

from jobhub.server.streaming.sse import EventStream

ROOT = Path(__file__).resolve().parents[2]


def _locked(package: str) -> str:
    text = (ROOT / "constraints.txt").read_text()
    found = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE)
    assert found, f"{package} is not locked in constraints.txt"
    return found.group(1)


def test_sse_starlette_is_the_locked_version() -> None:
    assert version("sse-starlette") == _locked("sse-starlette")


def test_the_send_step_jobhub_replaces_is_sse_starlettes_own() -> None:
    step = EventSourceResponse._send_with_timeout
    assert list(inspect.signature(step).parameters) == ["self", "send", "message"]
    assert inspect.iscoroutinefunction(step)
    # Every chunk the body iterator yields goes out through it.
    streaming = inspect.getsource(EventSourceResponse._stream_response)
    loop = streaming.split("async for data in self.body_iterator:")[1].split("except")[0]
    assert "await self._send_with_timeout(" in loop


def test_event_stream_replaces_only_the_send_step() -> None:
    private = {
        name
        for name, value in vars(EventStream).items()
        if name.startswith("_") and not name.startswith("__") and callable(value)
    }
    inherited = {name for name in private if hasattr(EventSourceResponse, name)}
    assert inherited == {"_send_with_timeout"}
