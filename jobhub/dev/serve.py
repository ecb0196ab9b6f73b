"""``jobhub serve``: the web app as production runs it.

    jobhub serve [--host HOST] [--port PORT] [--web-processes N] [--root-path /jobhub]

uvicorn on the app factory with two settings a plain ``uvicorn`` command line leaves out:
``jobhub.server.protocol:HttpProtocol``, httptools with a limit on the request head (without
it one huge header stalls the whole process, see protocol.py), and a graceful-shutdown
timeout, since an SSE stream never ends on its own and uvicorn would wait for it forever.
The Procfile and ``jobhub dev`` both start the web app through here, so no documented way
of running it goes without them.
"""

from __future__ import annotations

import uvicorn

from jobhub.core.settings import Settings

__all__ = ["APP", "GRACEFUL_SHUTDOWN_SECONDS", "HTTP_PROTOCOL", "serve"]

APP = "jobhub.server.app:create_app"
HTTP_PROTOCOL = "jobhub.server.protocol:HttpProtocol"
GRACEFUL_SHUTDOWN_SECONDS = 3
"""How long open responses (SSE streams above all) may take to end once asked to stop: a
browser's EventSource reconnects to another process, so a long wait only delays a deploy."""


def serve(
    host: str,
    port: int,
    *,
    web_processes: int = 1,
    root_path: str = "",
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """Run the web app until SIGINT or SIGTERM.

    The settings are read once here first, so that a malformed or missing variable is a
    ``ConfigError`` before uvicorn starts (each process reads them again in the factory).
    """
    Settings.from_env()
    uvicorn.run(
        # By import string: uvicorn's workers (processes) each import the app themselves.
        APP,
        factory=True,
        http=HTTP_PROTOCOL,
        host=host,
        port=port,
        workers=web_processes,
        root_path=root_path,
        headers=headers or [],
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
