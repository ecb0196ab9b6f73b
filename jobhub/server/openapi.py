"""The OpenAPI document, served at ``/openapi.json``.

Every schema in it is generated from the msgspec models the handlers decode requests with
(``EnqueueRequest``) and encode answers with (``Snapshot``, ``JobPage``, ``OutputPage``…), so
the document cannot drift from what the code checks and sends. Below, a request or answer
names its model (a type, ``list[Snapshot]`` too) where the schema goes; ``document()`` turns
each into JSON Schema in one pass. What is written here by hand is what no model says: the
paths, their query and path parameters, the statuses and what each means.
"""

from __future__ import annotations

from typing import Any

import msgspec

from jobhub.core.batch import BatchSnapshot
from jobhub.core.snapshot import Snapshot, Status
from jobhub.server.archive import openapi_paths as archive_paths
from jobhub.server.console import (
    MAX_OUTPUT_PAGE,
    Detail,
    OutputEntry,
    OutputKind,
    OutputPage,
    Stats,
)
from jobhub.server.health import Health
from jobhub.server.openapi_batches import batch_paths
from jobhub.server.routes import (
    MAX_PAGE,
    SCHEMA_REF,
    Conflict,
    EnqueueRequest,
    Error,
    JobId,
    JobPage,
)
from jobhub.server.scopes import TAG_PATTERN, TokenGrant, TokenRequest
from jobhub.server.session import SessionState, SignIn
from jobhub.server.streaming.events import MAX_JOBS_PER_STREAM
from jobhub.webhooks.deliveries import Delivery

__all__ = ["document"]

# Models that reach a client only as JSON encoded before (a stored snapshot, an output
# entry, a delivery), passed through as ``msgspec.Raw``: the answers that carry them name
# them by reference (routes.encoded), so their schemas must be among the components.
_PASSED_THROUGH = (Snapshot, OutputEntry, Delivery, BatchSnapshot)


def _json(model: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": model}}}


def _body(model: type[msgspec.Struct]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": model}}}


def _query(name: str, schema: Any, description: str | None = None) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "schema": schema}
    return parameter if description is None else {**parameter, "description": description}


_STREAM = {
    "description": "text/event-stream: `id: <seq>` and `data: <snapshot>` per event",
    "content": {"text/event-stream": {"schema": str}},
}
_BAD = _json(Error, "malformed request")
_MISSING = _json(Error, "no such job")
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": JobId,
}
_TOKEN = _query(
    "token",
    str,
    "the job's token, where no Authorization header can be sent (EventSource)",
)
_TAG = {"type": "string", "pattern": TAG_PATTERN}
_DENIED = {
    "401": _json(Error, "no credentials, or an unknown API key"),
    "403": _json(Error, "a token for another job, expired or forged"),
}
_READ = {**_DENIED, "400": _BAD, "404": _MISSING}
"""What every read of one job may answer besides its 200."""


def _job_read(
    summary: str,
    ok: dict[str, Any],
    also: dict[str, Any] | None = None,
    parameters: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [_JOB_ID, _TOKEN, *parameters],
            "responses": {**_READ, "200": ok, **(also or {})},
        }
    }


def _job_action(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_JOB_ID, _TOKEN],
            "responses": {
                **_READ,
                "200": _json(Snapshot, "the job's snapshot after the change"),
                "409": _json(Conflict, "the job's status does not allow it"),
                "503": _json(Error, "Redis cannot be reached"),
            },
        }
    }


def _paths() -> dict[str, Any]:
    unsupported = _json(Error, "the body is not sent as application/json")
    return {
        "/jobs": {
            "post": {
                "summary": "Start a job",
                "requestBody": _body(EnqueueRequest),
                "responses": {
                    **_DENIED,
                    "202": _json(Snapshot, "enqueued; Location names the job"),
                    "200": _json(Snapshot, "a job with this job_id exists already"),
                    "400": _BAD,
                    "413": _json(Error, "body over JOBHUB_MAX_BODY_BYTES"),
                    "415": unsupported,
                    "422": _json(Error, "no worker runs this function"),
                    "503": _json(Error, "Redis cannot be reached"),
                },
            },
            "get": {
                "summary": "List jobs, newest first",
                "parameters": [
                    _query("tag", _TAG, "only the jobs with this tag (a scoped token: its own)"),
                    _query("status", Status),
                    _query("function", str),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                    _query("cursor", {"type": "string", "pattern": r"^\d{1,18}$"}),
                ],
                "responses": {**_DENIED, "200": _json(JobPage, "a page of jobs"), "400": _BAD},
            },
        },
        "/jobs/{job_id}": {
            "delete": {
                "summary": "Delete an ended job and everything kept of it",
                "parameters": [_JOB_ID, _TOKEN],
                "responses": {
                    **_READ,
                    "204": {"description": "deleted"},
                    "409": _json(Conflict, "the job has not ended: cancel it first"),
                },
            },
            **_job_read(
                "A job's snapshot (ETag from seq; If-None-Match answers 304)",
                _json(Snapshot, "the snapshot"),
                {"304": {"description": "unchanged since the ETag given"}},
            ),
        },
        "/jobs/{job_id}/events": _job_read(
            "Stream a job's snapshots until it ends",
            _STREAM,
            {"204": {"description": "the client (Last-Event-ID) holds the final state"}},
        ),
        "/jobs/{job_id}/history": _job_read(
            "Every snapshot of a job, in seq order", _json(list[Snapshot], "the history")
        ),
        "/jobs/{job_id}/deliveries": _job_read(
            "Every attempt to deliver the job's webhook, oldest first",
            _json(list[Delivery], "the attempts (none yet, or no callback_url: empty)"),
        ),
        "/jobs/{job_id}/output": _job_read(
            "A page of the job's output: log lines and chunks, oldest first",
            _json(OutputPage, "entries, any gap before them, and the next cursor"),
            parameters=(
                _query(
                    "after",
                    {"type": "string", "pattern": r"^(0|[0-9]{1,20}-[0-9]{1,20})$"},
                    "an entry id (a page's `next`); 0 for the start",
                ),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUT_PAGE}),
                _query("kind", OutputKind),
            ),
        ),
        "/jobs/{job_id}/detail": _job_read(
            "A job's arguments, timings and worker, beside its snapshot",
            _json(Detail, "the detail"),
        ),
        "/jobs/{job_id}/retry": {
            "post": {
                "summary": "Run an ended job again, as a new job with the same arguments",
                "parameters": [_JOB_ID],
                "responses": {
                    **_READ,
                    "202": _json(Snapshot, "the new job; Location names it"),
                    "200": _json(Snapshot, "the job was retried before: that retry"),
                    "409": _json(Conflict, "the job has not ended"),
                    "422": _json(Error, "no live worker runs its function"),
                },
            }
        },
        "/stats": {
            "get": {
                "summary": "Counts by status, queue depth, live workers, jobs ended per minute",
                "responses": {**_DENIED, "200": _json(Stats, "the figures now")},
            }
        },
        "/session": {
            "get": {
                "summary": "Whether the API is secured, and this browser signed in",
                "responses": {"200": _json(SessionState, "the state, with the CSRF token")},
            },
            "post": {
                "summary": "Sign a browser in with an API key: an HttpOnly session cookie",
                "requestBody": _body(SignIn),
                "responses": {
                    "200": _json(SessionState, "signed in (or the API is open)"),
                    "400": _BAD,
                    "401": _json(Error, "unknown API key"),
                    "413": _json(Error, "body over 64 KiB"),
                    "415": unsupported,
                },
            },
            "delete": {
                "summary": "Sign out: the session cookie is cleared",
                "responses": {"204": {"description": "signed out"}},
            },
        },
        "/tokens": {
            "post": {
                "summary": "Mint a scoped token: some users' jobs, some actions (API key only)",
                "requestBody": _body(TokenRequest),
                "responses": {
                    **_DENIED,
                    "201": _json(TokenGrant, "the token, its expiry and its id"),
                    "400": _BAD,
                    "415": unsupported,
                },
            }
        },
        "/tokens/{token_id}": {
            "delete": {
                "summary": "Revoke a scoped token in every web process (API key only)",
                "parameters": [{"name": "token_id", "in": "path", "required": True, "schema": str}],
                "responses": {**_DENIED, "204": {"description": "revoked"}, "400": _BAD},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Whether this process is up and reaches Redis (no credentials)",
                "responses": {
                    "200": _json(Health, "up, with the number of functions workers offer"),
                    "503": _json(Health, "Redis cannot be reached; Retry-After: 1"),
                },
            }
        },
        "/jobs/{job_id}/cancel": _job_action("Cancel a queued, running or paused job"),
        "/jobs/{job_id}/pause": _job_action("Pause a running job at its next progress report"),
        "/jobs/{job_id}/resume": _job_action("Resume a paused job"),
        "/events": {
            "get": {
                "summary": "One stream for several jobs; without `jobs`, every job's snapshots",
                "parameters": [
                    _query(
                        "jobs",
                        str,
                        f"comma-separated job ids, at most {MAX_JOBS_PER_STREAM}",
                    ),
                    _query(
                        "tokens",
                        str,
                        "one job token per listed job, in order, comma-separated",
                    ),
                    _query("tag", _TAG, "a tag's jobs, those created later too"),
                    _query("token", str, "a scoped token, where no header can be sent"),
                ],
                "responses": {
                    **_READ,
                    "200": _STREAM,
                    "204": {"description": "the client's cursor holds every final state"},
                },
            }
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths = {**_paths(), **batch_paths(), **archive_paths()}
    # A model is no JSON, so encoding the paths hands each to enc_hook: once to collect them
    # all (their schemas are generated together, sharing components), once to put each
    # model's schema in its place.
    found: list[Any] = []
    msgspec.json.encode(paths, enc_hook=found.append)
    models = tuple(dict.fromkeys(found))  # each once, in order
    refs, components = msgspec.json.schema_components(
        (*models, *_PASSED_THROUGH), ref_template=SCHEMA_REF
    )
    schemas = dict(zip(models, refs, strict=False))  # refs ends with _PASSED_THROUGH's
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobhub", "version": "0.1.0"},
        "paths": msgspec.json.decode(msgspec.json.encode(paths, enc_hook=schemas.__getitem__)),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "jobToken": {"type": "http", "scheme": "bearer", "description": "a job's token"},
                "scopedToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a scoped token (POST /tokens): the jobs of its scope",
                },
            },
        },
    }
