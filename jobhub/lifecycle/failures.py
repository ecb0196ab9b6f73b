"""What a failed job's snapshot says: its ``error``, kept storable whatever was raised."""

from __future__ import annotations

from jobhub.core.snapshot import JobError

__all__ = ["ERROR_DETAIL_LIMIT", "error_of", "job_error", "printable"]

ERROR_DETAIL_LIMIT = 8192
"""Characters of an error's message kept in the snapshot: the snapshot (and each history
entry) would otherwise carry a message of any size; the full traceback goes to the job's
log."""


def job_error(type_: str, detail: str) -> JobError:
    """An ``error`` of ``type_`` with ``detail`` cut to ``ERROR_DETAIL_LIMIT`` characters."""
    # A message may carry lone surrogates (os.listdir's names for undecodable bytes), which
    # UTF-8 cannot carry; escape them so that the failure itself can always be stored.
    if len(detail) > ERROR_DETAIL_LIMIT:
        cut = len(detail) - ERROR_DETAIL_LIMIT
        detail = f"{detail[:ERROR_DETAIL_LIMIT]}… ({cut} more characters cut)"
    return JobError(type_, printable(detail))


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_of(exc: BaseException) -> JobError:
    """The snapshot's ``error`` for an exception a job raised."""
    try:
        detail = str(exc)
    except Exception as broken:  # its __str__ raised: say so, rather than fail on it
        detail = f"(its message could not be read: {type(broken).__name__})"
    return job_error(type(exc).__name__, detail)
