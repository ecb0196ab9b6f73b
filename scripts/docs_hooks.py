"""MkDocs hook: the HTTP API page's table of endpoints, from jobhub's OpenAPI document.

The table is written at build time from ``jobhub.server.openapi.document()``, the document
``GET /openapi.json`` serves, so the page lists every route the app has and no copy of it
can fall behind.
"""

from __future__ import annotations

from typing import Any

from jobhub.server import openapi

MARKER = "<!-- the endpoints, from the OpenAPI document -->"


def endpoints_table() -> str:
    rows = ["| method | path | what |", "|---|---|---|"]
    for path, operations in openapi.document()["paths"].items():
        for method, operation in operations.items():
            summary = str(operation.get("summary", "")).replace("|", "\\|")
            rows.append(f"| `{method.upper()}` | `{path}` | {summary} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, endpoints_table())
    return markdown
