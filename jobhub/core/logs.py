"""jobhub's own log lines: a job's id on every line about a job, as text or JSON.

Log calls about a job pass ``extra={"job_id": ...}``; ``configure`` gives the ``jobhub``
loggers one handler, in the format ``JOBHUB_LOG_FORMAT`` names:

    2026-11-22 07:15:14 WARNING jobhub.recovery [job 3fZ…] job recovered from lost worker …
    {"at": "2026-11-22T07:15:14.123456Z", "level": "WARNING", "logger": "jobhub.recovery",
     "message": "job recovered …", "job_id": "3fZ…"}
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import TextIO

from jobhub.core.snapshot import utcnow

__all__ = ["JsonFormatter", "configure", "job"]


def job(job_id: str) -> dict[str, str]:
    """``extra`` for a log call about a job: ``logger.info("…", extra=job(job_id))``."""
    return {"job_id": job_id}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "at": utcnow(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            line["job_id"] = job_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        return text if job_id is None else text.replace(" | ", f" [job {job_id}] ", 1)


def configure(log_format: str, stream: TextIO | None = None) -> Callable[[], None]:
    """Give the ``jobhub`` loggers a handler in ``log_format``; returns how to undo it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s | %(message)s"))
    root = logging.getLogger("jobhub")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False

    def undo() -> None:
        root.removeHandler(handler)
        root.propagate = True

    return undo
