"""Webhooks: when a job with a ``callback_url`` ends, its final snapshot is POSTed there.

The snapshot write that makes a job terminal also queues its delivery (``jobhub:webhooks``,
scored by when it is due) in the same Lua step, so no path to an end (the worker, a cancel,
crash recovery) can miss it. Workers deliver, off every job's path: each claims due
deliveries with a lease (a worker that dies mid-delivery only delays it), POSTs the body
signed with HMAC-SHA256, and on failure or a non-2xx answer tries again with exponential
backoff. Every attempt is recorded in the job's delivery log (``GET /jobs/{id}/deliveries``),
which expires with the job; the job's history holds its snapshots only.

Anyone who may start a job chooses its callback URL, so the receiver is not trusted: an
attempt (resolving, connecting, sending, and the answer's status line and headers) has one
deadline, shorter than the delivery's lease, and the answer's body is never read (its
status decides); the connection is closed as soon as the headers are in.

The receiver checks the signature with ``verify``:

    ok = verify(request_body, request.headers["Jobhub-Signature"], secret)

A callback URL must be well-formed, and one that resolves to any address that is not public
(private, loopback, link-local, reserved, or an IPv6 form embedding one of those) is
refused, at enqueue and again at delivery, unless settings allow it.
At delivery its host is resolved once and the request goes to the very address that was
checked (see ``jobhub.targets``), so a DNS answer that changes meanwhile cannot redirect it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobhub.core import keys
from jobhub.core.exceptions import InvalidRequest
from jobhub.core.logs import job as log_job
from jobhub.core.parsing import ascii_int
from jobhub.core.snapshot import utcnow
from jobhub.store.lua import CLAIM, COUNT_ATTEMPT, RECORD_ATTEMPT
from jobhub.webhooks.targets import Target, parse, resolve

__all__ = [
    "SIGNATURE_HEADER",
    "Deliveries",
    "Delivery",
    "DeliveryLog",
    "check_target",
    "post",
    "sign",
    "verify",
]

logger = logging.getLogger("jobhub.webhooks")

SIGNATURE_HEADER = "Jobhub-Signature"


class Delivery(msgspec.Struct, frozen=True):
    """One attempt to deliver a job's webhook, as ``GET /jobs/{id}/deliveries`` lists it."""

    attempt: int
    """1 for the first try, counting up."""
    status: int | None
    """The receiver's HTTP status; null when no answer came."""
    error: str | None
    """Why the attempt failed; null when the receiver accepted it (2xx)."""
    at: str
    """When the attempt ended (ISO-8601 UTC)."""


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The signature header's value: ``t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(
    body: bytes, header: str, secret: str, *, tolerance: float = 300, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of now
    (older signatures are refused: a captured request cannot be replayed later)."""
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    t, v1 = ascii_int(fields.get("t", "")), fields.get("v1", "")
    if t is None or not v1:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(body, secret, t).partition("v1=")[2]
    return hmac.compare_digest(expected.encode(), v1.encode())


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse (``InvalidRequest``) a malformed callback URL, or unless ``allow_private`` one
    whose host does not resolve or resolves to any address that is not public."""
    if allow_private:
        parse(url)  # its host is resolved at delivery, where any address is allowed
    else:
        await resolve(url, allow_private=False)


async def post(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    secret: str,
    allow_private: bool,
) -> int:
    """POST ``body``, signed with ``secret``, to ``url`` and return the receiver's HTTP
    status: its host resolved once and checked, and the request sent to that very address,
    with the URL's host as ``Host`` (and as the TLS name). Raises ``InvalidRequest`` for a
    refused target, ``httpx.HTTPError`` if the request fails. The answer's body is not read.
    httpx's timeouts bound each step, not the whole: bound that with ``asyncio.timeout``.

        async with asyncio.timeout(10):
            status = await post(http, "https://hooks.example.com/x", body, secret="s",
                                allow_private=False)
    """
    target = await resolve(url, allow_private=allow_private)
    headers = {
        "host": target.host_header,
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(body, secret),
    }
    request = http.build_request(
        "POST", target.url, content=body, headers=headers, extensions=_tls_name(target)
    )
    # Streamed, and closed unread: the status is the answer, and a body read whole is as
    # large as the receiver likes (measured: a 200 MB answer grew a worker by 333-435 MB).
    # What is read is bounded by httpcore: the status line and headers at most 100 KiB,
    # read from the socket 64 KiB at a time.
    response = await http.send(request, stream=True)
    await response.aclose()
    return response.status_code


class DeliveryLog:
    """Each job's delivery attempts, kept apart from its history (which holds snapshots
    only) and expiring with the job. Workers append; the web app reads.

        log = DeliveryLog(redis)
        await log.read("job-1")     # [b'{"attempt":1,"status":200,...}']
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._append = redis.register_script(RECORD_ATTEMPT)

    async def append(self, job_id: str, delivery: Delivery, *, keep: int) -> None:
        """Record an attempt, keeping the newest ``keep``; nothing if the job has expired."""
        await self._append(
            keys=[keys.job_deliveries(job_id), keys.job_snapshot(job_id)],
            args=[msgspec.json.encode(delivery), keep],
        )

    async def read(self, job_id: str) -> list[bytes]:
        """The job's attempts (``Delivery`` as JSON), oldest first."""
        return await self._redis.lrange(keys.job_deliveries(job_id), 0, -1)  # type: ignore[no-any-return,misc]


class Deliveries:
    """A worker's webhook sender: claims due deliveries and sends them, forever."""

    def __init__(
        self,
        redis: Redis,
        *,
        secret: str,
        allow_private: bool,
        max_attempts: int = 5,
        backoff: float = 1.0,
        timeout: float = 10.0,
        lease: float | None = None,
        poll: float = 0.2,
    ) -> None:
        # The lease must outlast an attempt (and its Redis steps around it), or another
        # worker claims the delivery again while the first is still sending it.
        lease = max(30.0, 3 * timeout) if lease is None else lease
        if not 0 < timeout < lease:
            raise ValueError(f"a delivery's timeout ({timeout} s) must be shorter than its lease")
        self._redis = redis
        self._secret = secret
        self._allow_private = allow_private
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._timeout = timeout
        self._lease = lease
        self._poll = poll
        self._claim = redis.register_script(CLAIM)
        self._count = redis.register_script(COUNT_ATTEMPT)
        self._log = DeliveryLog(redis)
        # What is delivered: each job's final snapshot, and each batch's (its attempts are
        # logged here, not kept: a batch has no delivery log).
        self._queues = (_Queue(keys.WEBHOOKS, keys.job_snapshot, True),
                        _Queue(keys.BATCH_WEBHOOKS, keys.batch, False))  # fmt: skip
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        # No kept-alive connections: requests go to an IP, with the name in Host and SNI,
        # and a pooled TLS connection to that IP, verified for one name, must not carry a
        # request for another name served at the same address.
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobhub-webhooks")

    async def aclose(self) -> None:
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()  # an interrupted delivery is claimed again when its lease ends
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.aclose()

    async def _run(self) -> None:
        while True:
            try:
                for queue in self._queues:
                    now = time.time()
                    due = await self._claim(
                        keys=[queue.due], args=[now * 1000, (now + self._lease) * 1000, 20]
                    )
                    # Each in a task of its own: one slow receiver holds up no other.
                    for member in due:
                        sent = self._deliver(msgspec.json.decode(member), member, queue)
                        task = asyncio.create_task(sent)
                        self._sending.add(task)
                        task.add_done_callback(self._sending.discard)
            except (RedisError, OSError) as exc:
                logger.warning("could not claim webhooks (%s); trying again", exc)
            await asyncio.sleep(self._poll)

    async def _deliver(self, job_id: str, member: bytes, queue: _Queue) -> None:
        try:
            await self._attempt(job_id, member, queue)
        except (RedisError, OSError) as exc:
            # Still claimed; once the lease ends another round takes it up again.
            logger.warning("webhook of job %s interrupted (%s)", job_id, exc, extra=log_job(job_id))

    async def _attempt(self, job_id: str, member: bytes, queue: _Queue) -> None:
        job = queue.hash_of(job_id)
        callback, data = await self._redis.hmget(job, ["callback", "data"])  # type: ignore[misc]
        if callback is None or data is None:
            await self._redis.zrem(queue.due, member)  # the job expired meanwhile
            return
        attempt = int(await self._count(keys=[job]))
        if not attempt:
            await self._redis.zrem(queue.due, member)  # the job expired just now
            return
        status: int | None = None
        error: str | None = None
        try:
            url = msgspec.json.decode(callback)
            # One deadline for the whole attempt: httpx's timeouts bound each read, and a
            # receiver trickling a byte every 2 s never trips them (measured: the request
            # outlived the 30 s lease, and another round sent the webhook again).
            async with asyncio.timeout(self._timeout):
                status = await post(
                    self._http, url, data, secret=self._secret, allow_private=self._allow_private
                )
            if not 200 <= status < 300:
                error = f"the receiver answered {status}"
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except (httpx.HTTPError, InvalidRequest) as exc:
            error = str(exc) or type(exc).__name__
        delivery = Delivery(attempt=attempt, status=status, error=error, at=utcnow())
        if queue.logged:
            await self._log.append(job_id, delivery, keep=self._max_attempts)
        elif error is not None:
            logger.info("webhook of batch %s: attempt %d failed (%s)", job_id, attempt, error)
        if error is None or attempt >= self._max_attempts:
            await self._redis.zrem(queue.due, member)
            if error is not None:
                logger.warning(
                    "webhook of job %s given up after %d attempts",
                    job_id,
                    attempt,
                    extra=log_job(job_id),
                )
        else:
            retry_at = time.time() + self._backoff * 2 ** (attempt - 1)
            await self._redis.zadd(queue.due, {member: retry_at * 1000})


class _Queue(NamedTuple):
    due: str
    """Sorted set of what is due, scored by when (ms)."""
    hash_of: Callable[[str], str]
    """The key of the hash holding a member's ``callback`` and ``data``."""
    logged: bool
    """Whether attempts go to the job's delivery log."""


def _tls_name(target: Target) -> dict[str, Any]:
    """The request's httpx extensions: over TLS to a host name, that name as SNI, against
    which httpx then verifies the certificate (not against the IP it connects to)."""
    if target.scheme == "https" and not target.is_ip_literal:
        return {"sni_hostname": target.host}
    return {}
