"""uvicorn's httptools protocol, with a limit on the request head.

    uvicorn --http jobhub.server.protocol:HttpProtocol --factory jobhub.server.app:create_app

httptools sets no limit on the request line and headers, and builds each from the pieces
the parser hands it by concatenation, which is quadratic: measured with uvicorn 0.54 and
httptools 0.9, one header of 16 MiB cost 0.3 s of the event loop, 64 MiB 4.6 s, 128 MiB
17.6 s, during which no other request or stream of the process moved. uvicorn's only
limit, ``--h11-max-incomplete-event-size``, applies to its h11 protocol (pure Python,
slower on every request); this class keeps httptools and enforces the same knob on it.

A request whose head (request line and headers) passes the limit is answered 431 with the
API's JSON error and its connection closed; a client still sending may see the connection
reset instead. Parser errors (bytes that are not HTTP) get the JSON error too, not
uvicorn's text.

The class is named by import string, as uvicorn's ``--http`` option and ``Config(http=)``
accept; it subclasses uvicorn's protocol and patches nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from jobhub.core.exceptions import InvalidRequest

__all__ = ["DEFAULT_MAX_HEAD_BYTES", "HttpProtocol"]

logger = logging.getLogger("jobhub.web")

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
"""The limit where ``--h11-max-incomplete-event-size`` is not given: four times h11's own
default (16 KiB) and twice nginx's (four 8 KiB buffers), room for a large cookie jar."""


class HttpProtocol(HttpToolsProtocol):
    """HTTP/1.1 over httptools, refusing request heads over ``max_head_bytes``."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        # Bytes received since the last request ended (or the connection opened) while its
        # successor's head is not complete. Bytes that arrive in the same read as the end of
        # a request are not counted: the limit holds to within one read (≤ 256 KiB).
        self._head_bytes = 0
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        over = self._in_head and self._head_bytes > self.max_head_bytes
        if over and not self.transport.is_closing():  # not when the parser refused it already
            logger.warning("request head over %d bytes refused (431)", self.max_head_bytes)
            detail = f"the request line and headers exceed {self.max_head_bytes} bytes"
            self._refuse(b"431 Request Header Fields Too Large", detail)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to what the parser refuses, as the API's JSON error.
        self._refuse(b"400 Bad Request", msg)

    def _refuse(self, status: bytes, detail: str) -> None:
        content = msgspec.json.encode(InvalidRequest(detail).to_body())
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, len(content), content)
        )
        self.transport.close()
