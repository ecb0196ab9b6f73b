"""constraints.txt pins what is installed: scripts/setup (and so CI) installs with it, and
scripts/lock, run on this environment, writes the same file back."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_is_installed_at_the_pinned_versions(tmp_path: Path) -> None:
    regenerated = tmp_path / "constraints.txt"
    result = subprocess.run(
        [str(ROOT / "scripts" / "lock"), str(regenerated)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pins = [line for line in regenerated.read_text().splitlines() if "==" in line]
    assert {"starlette", "arq", "redis", "uvicorn", "httpx"} <= {p.split("==")[0] for p in pins}
    # A difference: an upgrade not locked (run scripts/lock), or an install without -c.
    assert regenerated.read_text() == (ROOT / "constraints.txt").read_text()
