"""The OpenAPI document, and schemathesis driving every endpoint of the live app from it."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from jobhub.server.console import routes as operator_routes
from jobhub.server.openapi import document
from jobhub.server.routes import routes
from jobhub.server.session import routes as session_routes


def test_the_document_covers_every_endpoint(base_url: str) -> None:
    served_document = httpx.get(base_url + "/openapi.json").json()
    assert served_document == document()  # what the fuzzing below is driven by
    documented = {
        (path, method.upper()) for path, ops in served_document["paths"].items() for method in ops
    }
    served = {
        (route.path, method)
        for route in [*routes, *operator_routes, *session_routes]
        for method in (route.methods or ())
        if method != "HEAD" and route.path not in {"/", "/dashboard"}  # pages, not API
    }
    assert served == documented


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
