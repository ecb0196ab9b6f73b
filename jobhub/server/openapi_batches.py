"""The batch paths of the OpenAPI document (jobhub/server/openapi.py puts them beside the
rest): their schemas are the msgspec models jobhub/server/batches.py decodes and encodes."""

from __future__ import annotations

from typing import Any

from jobhub.core.batch import MAX_BATCH_JOBS, BatchSnapshot
from jobhub.core.snapshot import Status
from jobhub.server.batches import (
    BATCH_BODY_BYTES,
    BatchCreated,
    BatchJobsPage,
    BatchPage,
    BatchRequest,
    ChildrenAdded,
)
from jobhub.server.routes import MAX_PAGE, Error, JobId

__all__ = ["batch_paths"]


def _json(model: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": model}}}


_BATCH_ID = {"name": "batch_id", "in": "path", "required": True, "schema": JobId}
_TOKEN = {
    "name": "token",
    "in": "query",
    "schema": str,
    "description": "the batch's token, where no Authorization header can be sent",
}
_ERRORS = {
    "400": _json(Error, "malformed request"),
    "401": _json(Error, "no credentials, or an unknown API key"),
    "403": _json(Error, "a token for another batch, expired or forged"),
    "404": _json(Error, "no such batch"),
}
_CONFLICT = _json(Error, "the batch cannot take this as it is (sealed, not ended, id used)")
_CREATE_ERRORS = {
    "413": _json(Error, f"body over {BATCH_BODY_BYTES:,} bytes"),
    "415": _json(Error, "the body is not sent as application/json"),
    "422": _json(Error, "no worker runs a child's function; nothing was created"),
    "503": _json(Error, "Redis cannot be reached"),
}


def _post(summary: str, ok: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [_BATCH_ID, _TOKEN],
            "responses": {**_ERRORS, status: ok, "409": _CONFLICT},
        }
    }


def batch_paths() -> dict[str, Any]:
    """The paths of ``/batches``, each request and answer named by its model."""
    return {
        "/batches": {
            "post": {
                "summary": f"Start a batch of up to {MAX_BATCH_JOBS:,} jobs, all or none",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": BatchRequest}},
                },
                "responses": {
                    **_ERRORS,
                    "202": _json(BatchCreated, "created; Location names the batch"),
                    "409": _CONFLICT,
                    **_CREATE_ERRORS,
                },
            },
            "get": {
                "summary": "Recent batches, newest first",
                "parameters": [
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
                "responses": {**_ERRORS, "200": _json(BatchPage, "a page of batches")},
            },
        },
        "/batches/{batch_id}": {
            "get": {
                "summary": "A batch's snapshot (one read, whatever its size)",
                "parameters": [_BATCH_ID, _TOKEN],
                "responses": {**_ERRORS, "200": _json(BatchSnapshot, "the snapshot")},
            },
            "delete": {
                "summary": "Delete an ended batch and its children",
                "parameters": [_BATCH_ID],
                "responses": {
                    **_ERRORS,
                    "204": {"description": "deleted"},
                    "409": _json(Error, "the batch has not ended: cancel it first"),
                },
            },
        },
        "/batches/{batch_id}/jobs": {
            "get": {
                "summary": "The batch's children, in its order, a page at a time",
                "parameters": [
                    _BATCH_ID,
                    _TOKEN,
                    {"name": "status", "in": "query", "schema": Status},
                    {
                        "name": "after",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0},
                        "description": "a page's next_after; 0 for the first",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    },
                ],
                "responses": {**_ERRORS, "200": _json(BatchJobsPage, "a page of children")},
            },
            "post": {
                "summary": "Add children to an open batch (the body of POST /batches: jobs)",
                "parameters": [_BATCH_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": BatchRequest}},
                },
                "responses": {
                    **_ERRORS,
                    "202": _json(ChildrenAdded, "added"),
                    "409": _json(Error, "the batch is sealed or has ended"),
                    **_CREATE_ERRORS,
                },
            },
        },
        "/batches/{batch_id}/events": {
            "get": {
                "summary": "Stream a batch (unnamed events) and its children (`job` events)",
                "parameters": [
                    _BATCH_ID,
                    _TOKEN,
                    {
                        "name": "jobs",
                        "in": "query",
                        "schema": {"enum": ["true", "false"]},
                        "description": "false: the batch's snapshots alone, no `job` events",
                    },
                ],
                "responses": {
                    **_ERRORS,
                    "200": {
                        "description": "text/event-stream; ids resume with Last-Event-ID",
                        "content": {"text/event-stream": {"schema": str}},
                    },
                    "204": {"description": "the client (Last-Event-ID) holds the batch's end"},
                },
            }
        },
        "/batches/{batch_id}/seal": _post(
            "Seal an open batch: no more children", _json(BatchSnapshot, "the batch")
        ),
        "/batches/{batch_id}/cancel": _post(
            "Cancel every child not ended; the batch ends canceled",
            _json(BatchSnapshot, "the batch after the cancel"),
        ),
        "/batches/{batch_id}/retry": _post(
            "Run the failed and canceled children again, each as a new job in its place",
            _json(ChildrenAdded, "the new children and the batch"),
            "202",
        ),
    }
