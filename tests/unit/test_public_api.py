from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import jobhub
from tests.support.servers import ROOT

SERVER_STACK = ("starlette", "uvicorn", "sse_starlette", "arq", "redis", "prometheus_client")


def test_all_is_exact_and_importable() -> None:
    assert isinstance(jobhub.__all__, tuple)
    assert sorted(jobhub.__all__) == sorted(set(jobhub.__all__))
    for name in jobhub.__all__:
        assert hasattr(jobhub, name), name
    assert jobhub.Client is importlib.import_module("jobhub.client.sync").Client
    public = {n for n in dir(jobhub) if not n.startswith("_")}
    submodules = {m.name for m in pkgutil.iter_modules(jobhub.__path__)}
    assert public - submodules == set(jobhub.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Clinet'"):
        jobhub.Clinet  # noqa: B018
    with pytest.raises(ImportError):
        exec("from jobhub import Clinet")


def test_every_module_declares_all() -> None:
    for module in pkgutil.walk_packages(jobhub.__path__, "jobhub."):
        if module.ispkg or module.name == "jobhub.__main__":
            continue  # a package only says what its layer holds; __main__ runs the CLI
        loaded = importlib.import_module(module.name)
        assert hasattr(loaded, "__all__"), module.name
        for name in loaded.__all__:
            assert hasattr(loaded, name), f"{module.name}.{name}"


def loaded_after(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after ``statement``, run from the
    repository's root (where ``worker_settings.py`` is)."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    return {name.split(".")[0] for name in json.loads(result.stdout)}


@pytest.mark.parametrize(
    "statement",
    [
        "import jobhub; from jobhub import Client",
        "from jobhub import AsyncClient, JobFailed, Snapshot, Status, WaitTimeout",
        "import jobhub.client.client",
        "from jobhub.client.cli import main",  # the CLI's HTTP commands
        # Used, not only imported: a request (to a port nobody listens on) and a close.
        "from jobhub import Client\nc = Client('http://127.0.0.1:9')\n"
        "try:\n    c.status('AAAAAAAAAAAAAAAAAAAAAA')\nexcept Exception:\n    pass\nc.close()",
    ],
)
def test_the_client_does_not_load_the_server_stack(statement: str) -> None:
    loaded = loaded_after(statement)
    assert {"jobhub", "httpx"} <= loaded
    assert loaded.isdisjoint(SERVER_STACK), loaded & set(SERVER_STACK)


def test_a_worker_does_not_load_the_web_stack() -> None:
    # What `arq worker_settings.WorkerSettings` imports: the worker's layers only.
    loaded = loaded_after("import worker_settings")
    assert {"jobhub", "arq", "redis"} <= loaded
    assert loaded.isdisjoint({"starlette", "sse_starlette", "uvicorn"}), loaded


def test_the_server_names_still_load_the_server() -> None:
    # The check above can fail: these names do bring the stack in.
    assert {"starlette", "uvicorn", "sse_starlette"} <= loaded_after(
        "from jobhub import create_app"
    )
    assert "arq" in loaded_after("from jobhub import worker_settings")


def test_only_the_archive_loads_sql() -> None:
    # The archive's SQL stack (SQLAlchemy, Alembic, the drivers) is the archiver's: a worker
    # feeding the archive, and the command's other subcommands, load none of it.
    sql = {"sqlalchemy", "alembic", "asyncpg", "aiosqlite"}
    assert loaded_after("import worker_settings").isdisjoint(sql)
    assert loaded_after("from jobhub.client.cli import main").isdisjoint(sql)
    assert {"sqlalchemy", "alembic"} <= loaded_after("import jobhub.archive.archiver")
