"""The integration layer's Redis: a redis-server of its own.

Its tests write jobs the way no worker would (snapshots that no queue holds, statuses set
by hand) and run jobhub's parts in the test process. The session's stack, which the system
and browser tests share, has a worker whose reconciler ends a queued job no queue holds once
it is a second old: on a shared Redis it would race these tests on a busy machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from jobhub.dev.server import RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer() as server:
        yield server.url
