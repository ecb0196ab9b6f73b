"""The tests mirror the package: every test module sits in the folder of its layer, where
tests/conftest.py marks it, so that `pytest -m unit` (or integration, system, browser)
runs all of that layer and nothing else."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LAYERS

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_is_in_a_layer_folder() -> None:
    misplaced = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in LAYERS
    ]
    assert misplaced == [], "move each into tests/unit, integration, system or browser"


def test_support_code_is_in_one_folder() -> None:
    loose = sorted(
        path.name for path in TESTS.glob("*.py") if path.name not in {"__init__.py", "conftest.py"}
    )
    assert loose == [], "shared code that is not a fixture goes in tests/support"
