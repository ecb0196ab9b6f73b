"""The OpenAPI document, served at ``/openapi.json``.

Its schemas are generated from the msgspec models that validate requests (``EnqueueRequest``)
and shape answers (``Snapshot``), so the document cannot drift from what the code checks.
"""

from __future__ import annotations

from typing import Any

import msgspec

from jobhub.core.snapshot import Snapshot, Status
from jobhub.server.console import MAX_OUTPUT_PAGE, Detail, OutputPage, Stats
from jobhub.server.routes import MAX_PAGE, EnqueueRequest
from jobhub.server.services import JOB_ID_PATTERN
from jobhub.server.session import SessionState, SignIn
from jobhub.server.streaming.events import MAX_JOBS_PER_STREAM
from jobhub.webhooks.deliveries import Delivery

__all__ = ["document"]


class ErrorDetail(msgspec.Struct):
    type: str
    detail: str


class Error(msgspec.Struct):
    """Every error answer: ``{"error": {"type": ..., "detail": ...}}``."""

    error: ErrorDetail


class Conflict(msgspec.Struct):
    """A 409: the error, and the job's snapshot as it is."""

    error: ErrorDetail
    snapshot: Snapshot | None


class JobPage(msgspec.Struct):
    jobs: list[Snapshot]
    next_cursor: str | None


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_STREAM = {
    "description": "text/event-stream: `id: <seq>` and `data: <snapshot>` per event",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_BAD = _json("Error", "malformed request")
_MISSING = _json("Error", "no such job")
_UNAVAILABLE = _json("Error", "Redis cannot be reached")
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
}
_TOKEN = {
    "name": "token",
    "in": "query",
    "description": "the job's token, where no Authorization header can be sent (EventSource)",
    "schema": {"type": "string"},
}
_DENIED = {
    "401": _json("Error", "no credentials, or an unknown API key"),
    "403": _json("Error", "a token for another job, expired or forged"),
}


def _job_action(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_JOB_ID, _TOKEN],
            "responses": {
                **_DENIED,
                "200": _json("Snapshot", "the job's snapshot after the change"),
                "400": _BAD,
                "404": _MISSING,
                "409": _json("Conflict", "the job's status does not allow it"),
                "503": _UNAVAILABLE,
            },
        }
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    _, components = msgspec.json.schema_components(
        (
            EnqueueRequest,
            Snapshot,
            Error,
            Conflict,
            JobPage,
            Delivery,
            Detail,
            OutputPage,
            Stats,
            SignIn,
            SessionState,
        ),
        ref_template="#/components/schemas/{name}",
    )
    job_id_only = {"parameters": [_JOB_ID, _TOKEN]}
    paths: dict[str, Any] = {
        "/jobs": {
            "post": {
                "summary": "Start a job",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("EnqueueRequest")}},
                },
                "responses": {
                    **_DENIED,
                    "202": _json("Snapshot", "enqueued; Location names the job"),
                    "200": _json("Snapshot", "a job with this job_id exists already"),
                    "400": _BAD,
                    "413": _json("Error", "body over JOBHUB_MAX_BODY_BYTES"),
                    "415": _json("Error", "the body is not sent as application/json"),
                    "422": _json("Error", "no worker runs this function"),
                    "503": _UNAVAILABLE,
                },
            },
            "get": {
                "summary": "List jobs, newest first",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": [s.value for s in Status]},
                    },
                    {"name": "function", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": r"^\d{1,18}$"},
                    },
                ],
                "responses": {**_DENIED, "200": _json("JobPage", "a page of jobs"), "400": _BAD},
            },
        },
        "/jobs/{job_id}": {
            "delete": {
                **job_id_only,
                "summary": "Delete an ended job and everything kept of it",
                "responses": {
                    **_DENIED,
                    "204": {"description": "deleted"},
                    "400": _BAD,
                    "404": _MISSING,
                    "409": _json("Conflict", "the job has not ended: cancel it first"),
                },
            },
            "get": {
                **job_id_only,
                "summary": "A job's snapshot (ETag from seq; If-None-Match answers 304)",
                "responses": {
                    **_DENIED,
                    "200": _json("Snapshot", "the snapshot"),
                    "304": {"description": "unchanged since the ETag given"},
                    "400": _BAD,
                    "404": _MISSING,
                },
            },
        },
        "/jobs/{job_id}/events": {
            "get": {
                **job_id_only,
                "summary": "Stream a job's snapshots until it ends",
                "responses": {
                    **_DENIED,
                    "200": _STREAM,
                    "204": {"description": "the client (Last-Event-ID) holds the final state"},
                    "400": _BAD,
                    "404": _MISSING,
                },
            }
        },
        "/jobs/{job_id}/history": {
            "get": {
                **job_id_only,
                "summary": "Every snapshot of a job, in seq order",
                "responses": {
                    **_DENIED,
                    "200": {
                        "description": "the history",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": _ref("Snapshot")}
                            }
                        },
                    },
                    "400": _BAD,
                    "404": _MISSING,
                },
            }
        },
        "/jobs/{job_id}/deliveries": {
            "get": {
                **job_id_only,
                "summary": "Every attempt to deliver the job's webhook, oldest first",
                "responses": {
                    **_DENIED,
                    "200": {
                        "description": "the attempts (none yet, or no callback_url: empty)",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": _ref("Delivery")}
                            }
                        },
                    },
                    "400": _BAD,
                    "404": _MISSING,
                },
            }
        },
        "/jobs/{job_id}/output": {
            "get": {
                "summary": "A page of the job's output: log lines and chunks, oldest first",
                "parameters": [
                    _JOB_ID,
                    _TOKEN,
                    {
                        "name": "after",
                        "in": "query",
                        "description": "an entry id (a page's `next`); 0 for the start",
                        "schema": {"type": "string", "pattern": r"^(0|[0-9]{1,20}-[0-9]{1,20})$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUT_PAGE},
                    },
                    {"name": "kind", "in": "query", "schema": {"enum": ["log", "output"]}},
                ],
                "responses": {
                    **_DENIED,
                    "200": _json("OutputPage", "entries, any gap before them, and the next cursor"),
                    "400": _BAD,
                    "404": _MISSING,
                },
            }
        },
        "/jobs/{job_id}/detail": {
            "get": {
                **job_id_only,
                "summary": "A job's arguments, timings and worker, beside its snapshot",
                "responses": {
                    **_DENIED,
                    "200": _json("Detail", "the detail"),
                    "400": _BAD,
                    "404": _MISSING,
                },
            }
        },
        "/jobs/{job_id}/retry": {
            "post": {
                "summary": "Run an ended job again, as a new job with the same arguments",
                "parameters": [_JOB_ID],
                "responses": {
                    **_DENIED,
                    "202": _json("Snapshot", "the new job; Location names it"),
                    "200": _json("Snapshot", "the job was retried before: that retry"),
                    "400": _BAD,
                    "404": _MISSING,
                    "409": _json("Conflict", "the job has not ended"),
                    "422": _json("Error", "no live worker runs its function"),
                },
            }
        },
        "/stats": {
            "get": {
                "summary": "Counts by status, queue depth, live workers, jobs ended per minute",
                "responses": {**_DENIED, "200": _json("Stats", "the figures now")},
            }
        },
        "/session": {
            "get": {
                "summary": "Whether the API is secured, and this browser signed in",
                "responses": {"200": _json("SessionState", "the state, with the CSRF token")},
            },
            "post": {
                "summary": "Sign a browser in with an API key: an HttpOnly session cookie",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SignIn")}},
                },
                "responses": {
                    "200": _json("SessionState", "signed in (or the API is open)"),
                    "400": _BAD,
                    "401": _json("Error", "unknown API key"),
                    "413": _json("Error", "body over 64 KiB"),
                    "415": _json("Error", "the body is not sent as application/json"),
                },
            },
            "delete": {
                "summary": "Sign out: the session cookie is cleared",
                "responses": {"204": {"description": "signed out"}},
            },
        },
        "/jobs/{job_id}/cancel": _job_action("Cancel a queued, running or paused job"),
        "/jobs/{job_id}/pause": _job_action("Pause a running job at its next progress report"),
        "/jobs/{job_id}/resume": _job_action("Resume a paused job"),
        "/events": {
            "get": {
                "summary": "One stream for several jobs; without `jobs`, every job's snapshots",
                "parameters": [
                    {
                        "name": "jobs",
                        "in": "query",
                        "description": f"comma-separated job ids, at most {MAX_JOBS_PER_STREAM}",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "tokens",
                        "in": "query",
                        "description": "one job token per listed job, in order, comma-separated",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    **_DENIED,
                    "200": _STREAM,
                    "204": {"description": "the client's cursor holds every final state"},
                    "400": _BAD,
                    "404": _MISSING,
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobhub", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "jobToken": {"type": "http", "scheme": "bearer", "description": "a job's token"},
            },
        },
    }
