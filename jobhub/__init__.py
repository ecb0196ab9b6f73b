"""jobhub: live progress for background jobs, on Starlette, ARQ and Redis.

Write a job (see ``jobhub.dev.demo``), list it in ``worker_settings.py``, run
``arq worker_settings.WorkerSettings`` and ``uvicorn --factory jobhub.server.app:create_app``.

Each name below is imported from its module when it is first used (PEP 562), so that
``from jobhub import Client`` loads the HTTP client only, not the server stack (Starlette,
uvicorn, sse-starlette, ARQ): a script that only follows jobs stays light.
"""

# Only private names besides __all__'s: the namespace is the public API
# (tests/unit/test_public_api.py).
import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from jobhub.client.client import AsyncClient
    from jobhub.client.history import ArchivedJob, HistoryPage
    from jobhub.client.sync import Client
    from jobhub.client.tokens import ScopedToken
    from jobhub.core.batch import BatchSnapshot, BatchStatus
    from jobhub.core.exceptions import (
        ApiError,
        ConfigError,
        InvalidProgress,
        InvalidRequest,
        JobCanceled,
        JobFailed,
        JobhubError,
        JobIsFinal,
        JobNotFound,
        PayloadTooLarge,
        RetriesExhausted,
        ServiceUnavailable,
        UnknownFunction,
        WaitTimeout,
        WrongStatus,
    )
    from jobhub.core.settings import Settings
    from jobhub.core.snapshot import TERMINAL, JobError, Snapshot, Status
    from jobhub.server.app import create_app
    from jobhub.worker.context import JobContext, ThreadJobContext
    from jobhub.worker.jobs import JobFunction, job
    from jobhub.worker.settings import worker_settings

__all__ = (
    "TERMINAL",
    "ApiError",
    "ArchivedJob",
    "AsyncClient",
    "BatchSnapshot",
    "BatchStatus",
    "Client",
    "ConfigError",
    "HistoryPage",
    "InvalidProgress",
    "InvalidRequest",
    "JobCanceled",
    "JobContext",
    "JobError",
    "JobFailed",
    "JobFunction",
    "JobIsFinal",
    "JobNotFound",
    "JobhubError",
    "PayloadTooLarge",
    "RetriesExhausted",
    "ScopedToken",
    "ServiceUnavailable",
    "Settings",
    "Snapshot",
    "Status",
    "ThreadJobContext",
    "UnknownFunction",
    "WaitTimeout",
    "WrongStatus",
    "create_app",
    "job",
    "worker_settings",
)

_MODULES = {
    "server.app": ("create_app",),
    "client.client": ("AsyncClient",),
    "client.sync": ("Client",),
    "client.history": ("ArchivedJob", "HistoryPage"),
    "client.tokens": ("ScopedToken",),
    "core.exceptions": (
        "ApiError",
        "ConfigError",
        "InvalidProgress",
        "InvalidRequest",
        "JobCanceled",
        "JobFailed",
        "JobhubError",
        "JobIsFinal",
        "JobNotFound",
        "PayloadTooLarge",
        "RetriesExhausted",
        "ServiceUnavailable",
        "UnknownFunction",
        "WaitTimeout",
        "WrongStatus",
    ),
    "worker.context": ("JobContext", "ThreadJobContext"),
    "worker.jobs": ("JobFunction", "job"),
    "core.settings": ("Settings",),
    "core.snapshot": ("TERMINAL", "JobError", "Snapshot", "Status"),
    "worker.settings": ("worker_settings",),
    "core.batch": ("BatchSnapshot", "BatchStatus"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


if not _typing.TYPE_CHECKING:  # hidden from mypy, which would then accept any name

    def __getattr__(name: str) -> object:
        module = _HOME.get(name)
        if module is None:
            raise AttributeError(f"module 'jobhub' has no attribute {name!r}")
        value = getattr(_importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # the next lookup is an ordinary attribute, not this call
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
