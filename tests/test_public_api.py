from __future__ import annotations

import importlib
import pkgutil

import jobhub


def test_all_is_exact_and_importable() -> None:
    assert isinstance(jobhub.__all__, tuple)
    assert sorted(jobhub.__all__) == sorted(set(jobhub.__all__))
    for name in jobhub.__all__:
        assert hasattr(jobhub, name), name
    public = {
        n
        for n in vars(jobhub)
        if not n.startswith("_") and not isinstance(getattr(jobhub, n), type(jobhub))
    }
    assert public == set(jobhub.__all__)


def test_every_module_declares_all() -> None:
    for module in pkgutil.iter_modules(jobhub.__path__):
        if module.name == "__main__":
            continue  # running it is running the CLI
        loaded = importlib.import_module(f"jobhub.{module.name}")
        assert hasattr(loaded, "__all__"), module.name
        for name in loaded.__all__:
            assert hasattr(loaded, name), f"{module.name}.{name}"
