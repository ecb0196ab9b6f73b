"""jobhub: live progress for background jobs, on Starlette, ARQ and Redis.

Write a job (see ``jobhub.demo``), list it in ``worker_settings.py``, run
``arq worker_settings.WorkerSettings`` and ``uvicorn --factory jobhub.app:create_app``.
"""

from .app import create_app
from .client import AsyncClient, Client
from .exceptions import (
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
from .reporter import JobContext, JobFunction, ThreadJobContext, job
from .settings import Settings
from .snapshot import TERMINAL, JobError, Snapshot, Status
from .worker import worker_settings

__all__ = (
    "TERMINAL",
    "ApiError",
    "AsyncClient",
    "Client",
    "ConfigError",
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
