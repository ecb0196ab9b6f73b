"""jobhub's errors. Every one renders to the JSON body the HTTP API returns, and survives
pickling (ARQ stores a failed job's exception pickled, and unpickles it to read a result):

    {"error": {"type": "JobNotFound", "detail": "no job 'abc'"}}

The tree:

    JobhubError                      500 (never raised for bad input)
    ├── ConfigError                  a setting is missing or malformed (at startup)
    ├── InvalidRequest               400 malformed JSON, wrong types, bad ids
    │   ├── UnknownFunction          422 no worker has registered that function
    │   └── PayloadTooLarge          413 body over JOBHUB_MAX_BODY_BYTES
    ├── Unauthorized                 401 no credentials, or an unknown API key
    ├── Forbidden                    403 a token for another job, expired or forged
    ├── JobNotFound                  404
    ├── JobIsFinal                   409 the job is terminal; nothing may change it
    ├── WrongStatus                  409 the change needs the job in another status
    ├── RunSuperseded                409 a write of a run that is no longer the job's newest
    ├── QueueHoldsId                 409 the queue still holds a job under the requested id
    ├── IdTaken                      409 a retry's id names a job that is not that retry
    ├── BatchNotFound                404
    ├── BatchConflict                409 the batch cannot take that change (sealed, not ended)
    ├── InvalidProgress              a job reported a percent outside 0..100 (also a ValueError)
    │   └── OutputTooLarge           an output entry over JOBHUB_OUTPUT_MAX_BYTES
    ├── RetriesExhausted             a job asked for a retry after its last try
    ├── ServiceUnavailable           503 Redis cannot be reached in time
    ├── ApiError                     (client) the API answered with an error
    └── JobEnded                     (client) a job waited for did not finish
        ├── JobFailed                its status is failed; .snapshot says why
        ├── JobCanceled              its status is canceled
        └── WaitTimeout              the wait ran out first
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "BatchConflict",
    "BatchNotFound",
    "ConfigError",
    "Forbidden",
    "IdTaken",
    "InvalidProgress",
    "InvalidRequest",
    "JobCanceled",
    "JobEnded",
    "JobFailed",
    "JobIsFinal",
    "JobNotFound",
    "JobhubError",
    "OutputTooLarge",
    "PayloadTooLarge",
    "QueueHoldsId",
    "RetriesExhausted",
    "RunSuperseded",
    "ServiceUnavailable",
    "Unauthorized",
    "UnknownFunction",
    "UnsupportedMediaType",
    "WaitTimeout",
    "WrongStatus",
]


class JobhubError(Exception):
    """Base of every jobhub error; ``status_code`` is what the HTTP API answers with."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle would rebuild an exception as ``cls(*self.args)``, and ``args`` holds only
        # the message, not what each subclass's ``__init__`` takes: restore the state as is.
        return (_rebuild, (type(self), self.args, self.__dict__))

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "detail": self.detail}}


def _rebuild(cls: type[JobhubError], args: tuple[Any, ...], state: dict[str, Any]) -> JobhubError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(JobhubError):
    pass


class InvalidRequest(JobhubError):
    status_code = 400


class UnknownFunction(InvalidRequest):
    status_code = 422

    def __init__(self, function: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) or "none (is a worker running?)"
        super().__init__(f"unknown function {function!r}; known functions: {listed}")
        self.known = sorted(known)

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        body["error"]["known"] = self.known
        return body


class PayloadTooLarge(InvalidRequest):
    status_code = 413


class UnsupportedMediaType(InvalidRequest):
    status_code = 415


class Unauthorized(JobhubError):
    status_code = 401


class Forbidden(JobhubError):
    status_code = 403


class JobNotFound(JobhubError):
    status_code = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")


class JobIsFinal(JobhubError):
    """A write to a job that already reached a terminal status; it was not stored."""

    status_code = 409

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} is already {status}; no later change is stored")
        self.job_id = job_id
        self.status = status


class WrongStatus(JobhubError):
    """A guarded change (pause, resume) met the job in a status it does not apply to."""

    status_code = 409

    def __init__(self, job_id: str, status: str, detail: str | None = None) -> None:
        super().__init__(detail or f"job {job_id!r} is {status}")
        self.job_id = job_id
        self.status = status


class RunSuperseded(JobhubError):
    """A write of a run that is no longer the job's newest (it was declared lost, or a newer
    run started); it was not stored, and the run should stop."""

    status_code = 409

    def __init__(self, job_id: str, run: str) -> None:
        super().__init__(f"run {run!r} of job {job_id!r} was superseded; its write is refused")
        self.job_id = job_id
        self.run = run


class QueueHoldsId(JobhubError):
    status_code = 409

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job id {job_id!r} is still held by the queue; use another")
        self.job_id = job_id


class IdTaken(JobhubError):
    """A retry's id (derived from the job's, so anyone can derive it) names a job that is
    not that retry: one started under it before, perhaps by another user."""

    status_code = 409


class BatchNotFound(JobhubError):
    status_code = 404

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id!r}")


class BatchConflict(JobhubError):
    """A change the batch cannot take as it is: children added after its seal, a delete
    before it ended, a batch id or child id already used."""

    status_code = 409


class InvalidProgress(JobhubError, ValueError):
    pass


class OutputTooLarge(InvalidProgress):
    """A log line or output chunk whose JSON is over ``JOBHUB_OUTPUT_MAX_BYTES``; nothing of
    it is stored."""


class RetriesExhausted(JobhubError):
    pass


class ServiceUnavailable(JobhubError):
    status_code = 503


class ApiError(JobhubError):
    """Raised by ``jobhub.client`` for an error answer: ``status_code`` and ``error_type``
    are the server's (``JobNotFound``, ``Forbidden``, …)."""

    def __init__(self, status_code: int, error_type: str, detail: str) -> None:
        super().__init__(f"{error_type}: {detail}")
        self.status_code = status_code
        self.error_type = error_type
        self.detail = detail


class JobEnded(JobhubError):
    """Raised by ``jobhub.client`` when a job it waits for ends otherwise than finished."""

    def __init__(self, detail: str, snapshot: Any) -> None:
        super().__init__(detail)
        self.snapshot = snapshot


class JobFailed(JobEnded):
    pass


class JobCanceled(JobEnded):
    pass


class WaitTimeout(JobEnded):
    pass
