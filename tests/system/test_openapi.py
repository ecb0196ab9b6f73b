"""The OpenAPI document, and schemathesis driving every endpoint of the live app from it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from jobhub.core.settings import Settings
from jobhub.server.app import create_app
from jobhub.server.openapi import document
from jobhub.store.store import Store


def test_the_document_covers_every_endpoint(base_url: str) -> None:
    served_document = httpx.get(base_url + "/openapi.json").json()
    assert served_document == document()  # what the fuzzing below is driven by
    documented = {
        (path, method.upper()) for path, ops in served_document["paths"].items() for method in ops
    }
    # Pages, the document itself, and Prometheus' text are no part of the JSON API.
    not_api = {"/", "/dashboard", "/openapi.json", "/metrics"}
    served = {
        (route.path, method)
        for route in create_app(Settings()).routes
        if isinstance(route, Route) and route.path not in not_api
        for method in (route.methods or ())
        if method != "HEAD"
    }
    assert served == documented


def test_every_reference_names_a_component() -> None:
    # A body passed through as stored JSON names its model by reference only.
    served_document = document()
    text = msgspec.json.encode(served_document).decode()
    named = set(re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', text))
    assert named and named <= set(served_document["components"]["schemas"])


async def test_an_error_answer_carries_only_documented_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs", json={"function": "demo.nope"})
    assert response.status_code == 422
    documented = document()["components"]["schemas"]["ErrorDetail"]["properties"]
    assert set(response.json()["error"]) == set(documented) == {"type", "detail", "known"}


async def test_stored_snapshots_are_answered_byte_for_byte(
    client: httpx.AsyncClient, store: Store
) -> None:
    # Deferred, the job stays queued: its stored snapshot holds still while it is read.
    created = await client.post("/jobs", json={"function": "demo.noop", "defer_seconds": 600})
    job_id = created.json()["job_id"]
    stored = await store.get(job_id)
    assert stored is not None and created.content == stored

    page = await client.get("/jobs", params={"limit": 1})
    assert page.content.startswith(b'{"jobs":[' + stored + b'],"next_cursor":"')
    history = await client.get(f"/jobs/{job_id}/history")
    assert history.content == b"[" + b",".join(await store.history(job_id)) + b"]"
    refused = await client.post(f"/jobs/{job_id}/pause")
    assert refused.status_code == 409
    assert refused.content.endswith(b',"snapshot":' + stored + b"}")
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200


schema = schemathesis.openapi.from_dict(document())


# GET /events without `jobs` streams every job for as long as the client stays: not a
# request a fuzzer can wait for. tests/system/test_many_events.py covers it.
@schema.exclude(path="/events").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_server_error_or_an_undocumented_answer(case: Any, base_url: str) -> None:
    if isinstance(case.body, dict):
        # A generated callback_url would send the worker's webhook to arbitrary hosts; this
        # suite sends traffic to this machine only. tests/system/test_webhooks.py covers the field.
        case.body.pop("callback_url", None)
    response = case.call_and_validate(
        base_url=base_url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
        timeout=10,
    )
    if response.status_code >= 400:
        assert set(response.json()) >= {"error"}
        assert {"type", "detail"} <= set(response.json()["error"])
