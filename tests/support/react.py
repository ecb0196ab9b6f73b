"""React pages for the browser tests: bundled with esbuild from the repository's
node_modules (package.json, package-lock.json; scripts/test runs ``npm ci``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.browser import IN_CI
from tests.support.servers import ROOT

__all__ = ["NODE_MODULES", "bundle", "needs_node_modules"]

NODE_MODULES = ROOT / "node_modules"
ESBUILD = NODE_MODULES / ".bin" / "esbuild"

needs_node_modules = pytest.mark.skipif(
    not ESBUILD.exists() and not IN_CI,
    reason="no node_modules: run `npm ci` (scripts/test does)",
)


def bundle(entry: Path, out: Path) -> str:
    """``entry`` (a .jsx module) and all it imports as one ES module; returns its code.
    Bare imports (``react``) resolve from the repository's node_modules wherever the entry
    lies."""
    subprocess.run(
        [str(ESBUILD), str(entry), "--bundle", "--format=esm", "--jsx=automatic",
         "--define:process.env.NODE_ENV=\"development\"", f"--outfile={out}",
         "--log-level=warning"],
        check=True, timeout=60, env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )  # fmt: skip
    return out.read_text()
