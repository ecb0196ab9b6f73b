"""A plain ``pip install jobhub`` runs each process: what the web app, a worker and the CLI
import without an archive comes from jobhub's own dependencies, not from an extra.

The suite's environment holds every extra, so nothing else would notice a module that only
an extra brings in (the web app once needed SQLAlchemy, then of the ``archive`` extra, and a
bare install could not start it).
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.servers import ROOT

# Imports each process's entry point with no archive set, and prints the top-level modules
# those imports added (those of the interpreter's start, site's .pth files included, are
# not jobhub's to answer for).
_IMPORTS = """
import json, sys
before = set(sys.modules)
from jobhub import Settings, worker_settings
from jobhub.server.app import create_app
from jobhub.client.cli import main
from jobhub.dev import demo
settings = Settings(redis_url="redis://127.0.0.1:1")
create_app(settings)
worker_settings(demo.FUNCTIONS, settings)
added = {name.partition(".")[0] for name in set(sys.modules) - before}
print(json.dumps(sorted(added - set(sys.stdlib_module_names))))
"""


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, with theirs, as markers select them."""
    seen: set[str] = set()
    pending = [Requirement(text) for text in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate(
            {**default_environment(), "extra": ""}
        ):
            continue
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(name) or []:
            child = Requirement(text)
            marker = child.marker
            wanted = marker is None or any(
                marker.evaluate({**default_environment(), "extra": extra})
                for extra in (*requirement.extras, "")
            )
            if wanted:
                child.marker = None
                pending.append(child)
    return {key.partition("[")[0] for key in seen}


def test_each_process_imports_only_what_a_plain_install_brings() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = _closure(project["dependencies"])
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    owners = importlib.metadata.packages_distributions()
    missing = {}
    for module in json.loads(done.stdout):
        distributions = {canonicalize_name(d) for d in owners.get(module, [])}
        if not distributions or "jobhub" in distributions:
            continue  # jobhub's own, or a module no installed distribution names
        if not distributions & installed:
            missing[module] = sorted(distributions)
    assert not missing, f"imported, but only an extra installs them: {missing}"
    # The check sees real modules: the web app's own stack is among them.
    assert {"starlette", "redis", "arq", "msgspec"} <= set(json.loads(done.stdout))
