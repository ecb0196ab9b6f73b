"""Webhooks: when a job with a ``callback_url`` ends, its final snapshot is POSTed there.

The snapshot write that makes a job terminal also queues its delivery (``jobhub:webhooks``,
scored by when it is due) in the same Lua step, so no path to an end (the worker, a cancel,
crash recovery) can miss it. Workers deliver, off every job's path: each claims due
deliveries with a lease (a worker that dies mid-delivery only delays it), POSTs the body
signed with HMAC-SHA256, and on failure or a non-2xx answer tries again with exponential
backoff. Every attempt is appended to the job's history.

The receiver checks the signature with ``verify``:

    ok = verify(request_body, request.headers["Jobhub-Signature"], secret)

A callback URL that resolves to a private, loopback or link-local address is refused (at
enqueue and again at delivery, against DNS rebinding) unless settings allow it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import time
from urllib.parse import urlsplit

import httpx
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import keys
from .exceptions import InvalidRequest
from .logs import job as log_job
from .snapshot import utcnow

__all__ = ["SIGNATURE_HEADER", "Deliveries", "check_target", "sign", "verify"]

logger = logging.getLogger("jobhub.webhooks")

SIGNATURE_HEADER = "Jobhub-Signature"

# Claim what is due: push each back by the lease, so that only this worker has it for now.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, job in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], job) end
return due
"""


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
    t, v1 = fields.get("t", ""), fields.get("v1", "")
    if not t.isdigit() or not v1:
        return False
    if abs((time.time() if now is None else now) - int(t)) > tolerance:
        return False
    expected = sign(body, secret, int(t)).partition("v1=")[2]
    return hmac.compare_digest(expected.encode(), v1.encode())


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse a callback URL that is not http(s), or resolves to a non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"callback_url must be an http(s) URL, got {url!r}")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
    except OSError:
        raise InvalidRequest(f"callback_url host {parts.hostname!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidRequest(
                f"callback_url resolves to a non-public address ({address}); "
                "set JOBHUB_WEBHOOK_ALLOW_PRIVATE to allow it"
            )


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
        lease: float = 30.0,
        poll: float = 0.2,
    ) -> None:
        self._redis = redis
        self._secret = secret
        self._allow_private = allow_private
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._lease = lease
        self._poll = poll
        self._claim = redis.register_script(_CLAIM)
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10, follow_redirects=False)

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
                now = time.time()
                due = await self._claim(
                    keys=[keys.WEBHOOKS], args=[now * 1000, (now + self._lease) * 1000, 20]
                )
                # Each in a task of its own: one slow receiver holds up no other.
                for member in due:
                    task = asyncio.create_task(self._deliver(msgspec.json.decode(member), member))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)
            except (RedisError, OSError) as exc:
                logger.warning("could not claim webhooks (%s); trying again", exc)
            await asyncio.sleep(self._poll)

    async def _deliver(self, job_id: str, member: bytes) -> None:
        try:
            await self._attempt(job_id, member)
        except (RedisError, OSError) as exc:
            # Still claimed; once the lease ends another round takes it up again.
            logger.warning("webhook of job %s interrupted (%s)", job_id, exc, extra=log_job(job_id))

    async def _attempt(self, job_id: str, member: bytes) -> None:
        job = keys.job_snapshot(job_id)
        callback, data = await self._redis.hmget(job, ["callback", "data"])  # type: ignore[misc]
        if callback is None or data is None:
            await self._redis.zrem(keys.WEBHOOKS, member)  # the job expired meanwhile
            return
        attempt = await self._redis.hincrby(job, "webhook_attempts", 1)  # type: ignore[misc]
        status: int | None = None
        error: str | None = None
        try:
            url = msgspec.json.decode(callback)
            await check_target(url, allow_private=self._allow_private)
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(data, self._secret),
            }
            response = await self._http.post(url, content=data, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"the receiver answered {status}"
        except (httpx.HTTPError, InvalidRequest) as exc:
            error = str(exc) or type(exc).__name__
        record = {"webhook": {"attempt": attempt, "status": status, "error": error, "at": utcnow()}}
        await self._redis.rpush(keys.job_history(job_id), msgspec.json.encode(record))  # type: ignore[misc]
        if error is None or attempt >= self._max_attempts:
            await self._redis.zrem(keys.WEBHOOKS, member)
            if error is not None:
                logger.warning(
                    "webhook of job %s given up after %d attempts",
                    job_id,
                    attempt,
                    extra=log_job(job_id),
                )
        else:
            retry_at = time.time() + self._backoff * 2 ** (attempt - 1)
            await self._redis.zadd(keys.WEBHOOKS, {member: retry_at * 1000})
