"""EventStream replaces one hook of sse-starlette's response; pin that the hook exists."""

from __future__ import annotations

import inspect

from sse_starlette import EventSourceResponse

from jobhub.sse import EventStream


def test_the_overridden_send_hook_is_still_sse_starlettes() -> None:
    # If sse-starlette renames or re-signs it, EventStream would silently time every send
    # again (or not at all): fail here instead.
    ours = inspect.signature(EventStream._send_with_timeout)
    theirs = inspect.signature(EventSourceResponse._send_with_timeout)
    assert list(ours.parameters) == list(theirs.parameters) == ["self", "send", "message"]
    source = inspect.getsource(EventSourceResponse._stream_response)
    assert "self._send_with_timeout(" in source
