"""The folder tree is the architecture: each package imports only the layers below it.

Read from the source (module-level imports; an import inside a function is a deliberate
late load, such as the CLI starting the dev stack), so that a layer that reaches upward
fails here before it drags the web stack into a worker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "jobhub"

ALLOWED = {
    "core": {"core"},
    "store": {"core", "store"},
    "lifecycle": {"core", "store", "lifecycle"},
    "webhooks": {"core", "store", "webhooks"},
    "archive": {"core", "store", "archive"},
    "worker": {"core", "store", "lifecycle", "webhooks", "worker"},
    "server": {"core", "store", "lifecycle", "webhooks", "server", "archive"},
    "client": {"core", "client"},
    "dev": {
        "core",
        "store",
        "lifecycle",
        "webhooks",
        "worker",
        "server",
        "client",
        "dev",
        "archive",
    },
}
"""What each package may import of jobhub (the table in README's "How it is built")."""


def _layer_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    layers = set()
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks load nothing at run time
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "jobhub" and len(parts) > 1:
                layers.add(parts[1])
    return layers


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_the_layers_below_its_own(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0]
    assert layer in ALLOWED, f"{layer}/ is a package the layer table does not know"
    assert _layer_imports(path) <= ALLOWED[layer]


def test_every_package_is_in_the_table() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def test_only_the_arq_adapter_imports_arq() -> None:
    # ARQ's keys, results, abort set, retry signals and error strings have one owner
    # (jobhub/lifecycle/arq.py), so a change of ARQ is met in one module.
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(name == "arq" or name.startswith("arq.") for name in names):
                importers.add(str(path.relative_to(PACKAGE)))
    assert importers == {"lifecycle/arq.py"}


def test_no_module_is_over_400_lines() -> None:
    # One concept, one module: past ~400 lines a module holds more than one.
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}  # fmt: skip
    assert long == {}


def test_no_two_classes_share_a_name() -> None:
    seen: dict[str, str] = {}
    twice = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ClassDef):
                where = str(path.relative_to(PACKAGE))
                if node.name in seen:
                    twice.append((node.name, seen[node.name], where))
                seen.setdefault(node.name, where)
    assert twice == []
