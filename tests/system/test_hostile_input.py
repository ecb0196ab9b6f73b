"""Bytes that are not UTF-8, numbers that are not ASCII, request heads that never end: each a
4xx with the JSON error, from the real stack (uvicorn as deployed, Redis, an ARQ worker)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from jobhub.core.parsing import ascii_int, utf8_error
from tests.support.servers import ThreadedServer

# Byte sequences no UTF-8 decoder may accept (RFC 3629 §3, Unicode ch. 3 D92).
NOT_UTF8 = {
    "lone surrogate": b"\xed\xa0\x80",
    "overlong slash": b"\xc0\xaf",
    "stray continuation": b"\x80",
    "truncated sequence": b"\xe2\x82",
    "invalid byte": b"\xff",
    "five-byte form": b"\xf8\x88\x80\x80\x80",
    "above U+10FFFF": b"\xf4\x90\x80\x80",
}


def assert_invalid_request(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["type"] == "InvalidRequest"
    for word in words:
        assert word in error["detail"], error["detail"]


def body_with(field: str, raw: bytes) -> bytes:
    """A POST /jobs body whose ``field`` holds ``raw`` inside a JSON string."""
    s = b'"x' + raw + b'"'
    fields = {
        "function": b'{"function": ' + s + b"}",
        "job_id": b'{"function": "demo.noop", "job_id": ' + s + b"}",
        "callback_url": b'{"function": "demo.noop", "callback_url": ' + s + b"}",
        "args": b'{"function": "demo.noop", "args": [1, ' + s + b"]}",
        "kwargs value": b'{"function": "demo.noop", "kwargs": {"a": {"b": ' + s + b"}}}",
        "kwargs name": b'{"function": "demo.noop", "kwargs": {' + s + b": 1}}",
    }
    return fields[field]


FIELDS = ["function", "job_id", "callback_url", "args", "kwargs value", "kwargs name"]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("form", list(NOT_UTF8))
async def test_bytes_that_are_not_utf8_in_any_body_string_are_400(
    client: httpx.AsyncClient, field: str, form: str
) -> None:
    body = body_with(field, NOT_UTF8[form])
    response = await client.post(
        "/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert_invalid_request(response, "not valid UTF-8")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("escape", [rb"\ud800", rb"\udfff", rb"\ud800\u0041", rb"\udc00\ud800"])
async def test_lone_surrogate_escapes_in_any_body_string_are_400(
    client: httpx.AsyncClient, field: str, escape: bytes
) -> None:
    # Python would hold these as a str that cannot be encoded again (for Redis, for the
    # worker's result): they must be refused on the way in.
    body = body_with(field, escape)
    response = await client.post(
        "/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert_invalid_request(response, "not valid JSON")


@pytest.mark.parametrize("path", ["/jobs", "/session"])
async def test_a_bad_byte_is_named_where_it_is_in_the_body(
    client: httpx.AsyncClient, path: str
) -> None:
    body = b'{"function":"\xff\xfe"}'  # the 0xff is the body's 14th byte
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert_invalid_request(response, "not valid UTF-8", "byte 0xff at offset 13")


async def test_text_that_is_utf8_still_goes_through(client: httpx.AsyncClient) -> None:
    # A surrogate pair escape, raw multi-byte characters: what is valid is not refused.
    body = '{"function": "demo.noop", "args": ["\\ud83d\\ude00", "é€😀"]}'.encode()
    response = await client.post(
        "/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 202, response.text
    headers = {"x-note": "café ☕".encode()}
    assert (
        await client.get("/jobs", params={"function": "démo"}, headers=headers)
    ).status_code == 200


@pytest.mark.parametrize("form", list(NOT_UTF8))
async def test_percent_encoded_bytes_that_are_not_utf8_in_the_query_are_400(
    client: httpx.AsyncClient, form: str
) -> None:
    escaped = "".join(f"%{byte:02x}" for byte in NOT_UTF8[form])
    # Without the check, each of these is answered as if U+FFFD had been sent: a page of no
    # jobs, the document, an unknown status.
    for url in (f"/jobs?function={escaped}", f"/openapi.json?x={escaped}", f"/jobs?{escaped}=1"):
        assert_invalid_request(await client.get(url), "query string", "not UTF-8")


@pytest.mark.parametrize("form", list(NOT_UTF8))
async def test_percent_encoded_bytes_that_are_not_utf8_in_the_path_are_400(
    client: httpx.AsyncClient, form: str
) -> None:
    escaped = "".join(f"%{byte:02x}" for byte in NOT_UTF8[form])
    for url in (f"/{escaped}", f"/static/{escaped}.js", f"/jobs/{escaped}/history"):
        assert_invalid_request(await client.get(url), "path", "not UTF-8")


@pytest.mark.parametrize("form", list(NOT_UTF8))
async def test_header_values_that_are_not_utf8_are_400(
    client: httpx.AsyncClient, form: str
) -> None:
    raw = NOT_UTF8[form]
    for headers in ({"x-note": b"a" + raw}, {"authorization": b"Bearer " + raw}):
        assert_invalid_request(await client.get("/jobs", headers=headers), "header", "not UTF-8")


def raw_exchange(base_url: str, request: bytes) -> bytes:
    """Send ``request`` as is (bytes httpx will not send) and read the whole answer."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def json_answer(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


@pytest.mark.parametrize(
    "target", [b"/jobs\xff", b"/jobs?function=\xed\xa0\x80", b"/\xc0\xaf/history"]
)
def test_raw_bytes_in_the_request_target_are_a_json_400(base_url: str, target: bytes) -> None:
    # Not even percent-encoded: the HTTP parser refuses them before the app runs.
    answer = raw_exchange(base_url, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = json_answer(answer)
    assert status == 400
    assert body["error"]["type"] == "InvalidRequest"


@pytest.mark.parametrize(
    "target",
    [
        "/jobs?status=finished&status=failed",
        "/events?jobs=a&jobs=b",
        "/jobs/some-job/output?after=0&after=0",
        "/jobs?limit=5&limit=6",
    ],
)
async def test_a_query_parameter_given_twice_is_400(client: httpx.AsyncClient, target: str) -> None:
    # Not silently its last value: `?status=finished&status=failed` is not "either".
    assert_invalid_request(await client.get(target), "given 2 times")


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},  # what any page may send cross-origin unasked
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {},
        {"content-type": "application/json", "content-encoding": "gzip"},
    ],
)
@pytest.mark.parametrize("path", ["/jobs", "/session"])
async def test_a_body_not_sent_as_json_is_415_and_starts_nothing(
    client: httpx.AsyncClient, headers: dict[str, str], path: str
) -> None:
    job_id = "not-json-" + os.urandom(4).hex()
    body = json.dumps({"function": "demo.noop", "job_id": job_id, "api_key": "k"})
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["type"] == "UnsupportedMediaType"
    assert (await client.get(f"/jobs/{job_id}")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"function": "demo.noop", "job_id": "abc\n"},
        {"function": "demo.count", "kwargs": {"steps\n": 1}},
    ],
)
async def test_a_trailing_newline_in_an_id_or_a_kwarg_name_is_400(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    # Python's `$` matches before a final newline: such an id was stored, then broke the
    # response's Location header.
    assert_invalid_request(await client.post("/jobs", json=body))
    assert_invalid_request(await client.get("/jobs/abc%0A"))


@pytest.mark.parametrize("raw", ["²", "٣", "1²", "+5", " 5", "5_0", "0x10", "", "9" * 5000])
async def test_limit_and_cursor_take_ascii_digits_only(client: httpx.AsyncClient, raw: str) -> None:
    # str.isdigit() takes "²" (then int() raises: a 500); int() takes "٣" as 3; 5,000 digits
    # pass isdigit() and then exceed int()'s digit limit.
    assert_invalid_request(await client.get("/jobs", params={"limit": raw}), "limit")
    assert_invalid_request(await client.get("/jobs", params={"cursor": raw}), "cursor")


def test_ascii_int_reads_ascii_digits_only() -> None:
    assert ascii_int("0") == 0
    assert ascii_int("007") == 7
    assert ascii_int("9" * 18) == 10**18 - 1
    for raw in ("²", "٣", "\uff11", "-1", "+1", " 1", "1 ", "1_0", "", "9" * 19):
        assert ascii_int(raw) is None, raw
    assert ascii_int("65535", max_digits=5) == 65535
    assert ascii_int("065535", max_digits=5) is None


def test_utf8_error_names_the_byte_and_never_echoes_it() -> None:
    assert utf8_error(b"plain") is None
    assert utf8_error("é€😀".encode()) is None
    for raw in NOT_UTF8.values():
        why = utf8_error(b"ok" + raw)
        assert why is not None and why.startswith(f"byte 0x{raw[0]:02x} at offset 2")
        assert why.isascii()


@pytest.fixture
def server(base_url: str) -> Iterator[tuple[str, int]]:
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    yield parts.hostname, parts.port


def test_a_huge_request_head_is_refused_before_it_is_read_and_the_server_goes_on(
    server: tuple[str, int],
) -> None:
    # httptools alone reads a head of any size (quadratically: 16 MiB cost 0.3 s, 128 MiB
    # 17.6 s of the event loop) and answers it. With jobhub's protocol the server stops
    # reading past its limit: 16 MiB cannot all be sent, and what comes back is a 431.
    total = 16 * 1024 * 1024
    chunk = b"a" * 65536
    sent = 0
    answer = b""
    with socket.create_connection(server, timeout=10) as sock:
        try:
            sock.sendall(b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Big: ")
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while part := sock.recv(65536):
                answer += part
        except ConnectionResetError:
            pass  # the server closed with our bytes unread: the kernel may reset
    assert sent < total, "the server read a 16 MiB header"
    if answer:
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "InvalidRequest"
    # Right after, the same server answers a request with a sizeable but sane head at once.
    cookie = b"jobhub_prefs=" + b"x" * 8000
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("path", ["/jobs", "/session"])
async def test_a_client_gone_mid_body_leaves_no_traceback(
    threaded: ThreadedServer, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", threaded.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{}".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the server is reading the body when the client goes
    writer.close()
    # A window for what must not happen: the server reads on, finds the client gone, and
    # would have logged a traceback by then.
    await asyncio.sleep(0.3)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
