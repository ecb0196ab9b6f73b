"""Where a webhook may go: the callback URL read strictly, resolved once, its address checked.

    target = await resolve("https://hooks.example.com/jobs", allow_private=False)
    target.address       # the IP that was checked, and the one to connect to
    target.host_header   # 'hooks.example.com', sent as Host (and as SNI, over TLS)

A URL that another parser would read differently is refused rather than guessed at:
non-ASCII (punycode the name), whitespace or backslashes, credentials (``user@``), a port
that is not 1-65535 in ASCII digits, an empty or malformed host. The port defaults by
scheme. Every address the name resolves to must be public, and an IPv6 address that
embeds an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) is judged by the
IPv4 address too, so ``[::ffff:127.0.0.1]`` or ``[64:ff9b::a9fe:a9fe]`` (169.254.169.254,
the cloud metadata service) cannot stand in for a refused address. The request is then
sent to the checked address (``Target.url``) with the original Host: a DNS answer that
changes after the check (rebinding) cannot move it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from jobhub.core.exceptions import InvalidRequest
from jobhub.core.parsing import ascii_int

__all__ = ["Target", "parse", "refusal", "resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}

# RFC 1123 host names, with "_" (found in real DNS names); each label 1-63 characters.
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")

# IPv6 prefixes that only carry an IPv4 address: judged by that address alone (RFC 6052
# NAT64, RFC 3056 6to4, RFC 4291 IPv4-mapped).
_WRAPPERS = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("2002::/16"),
    ipaddress.IPv6Network("::ffff:0:0/96"),
)
_NAT64 = _WRAPPERS[0]
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 IPv4-compatible, deprecated


@dataclass(frozen=True, slots=True)
class Target:
    """A callback URL taken apart, and the address its host resolved to."""

    scheme: str
    host: str
    """The host name or IP literal as in the URL (lowercase, no brackets)."""
    port: int
    path: str
    """Path and query, as in the URL; ``/`` if it had none."""
    address: IPAddress | None = None
    """The checked address to connect to; None before ``resolve``."""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to request: the resolved address in place of the host name."""
        if self.address is None:
            raise ValueError("resolve the target first")
        ip = self.address
        host = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse(url: str) -> Target:
    """Take a callback URL apart, or raise ``InvalidRequest`` saying what is wrong with it."""
    if not url.isascii() or any(c <= " " or c in "\\\x7f" for c in url):
        raise _bad(url, "must be ASCII without spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # unbalanced brackets, among others
        raise _bad(url, f"is malformed ({exc})") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        raise _bad(url, "must be an http(s) URL")
    if "@" in parts.netloc:
        raise _bad(url, "must not carry credentials (user@)")
    host, port = _host_and_port(url, parts)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, path)


def _host_and_port(url: str, parts: SplitResult) -> tuple[str, int]:
    netloc = parts.netloc.lower()
    if netloc.startswith("["):
        literal, bracket, rest = netloc[1:].partition("]")
        if not bracket:
            raise _bad(url, "has an unclosed '['")
        try:
            # No zone ids (fe80::1%25eth0): they name an interface of whoever connects.
            ipaddress.IPv6Address("%" if "%" in literal else literal)
            host = literal
        except ValueError:
            raise _bad(url, f"has a malformed IPv6 address [{literal}]") from None
    else:
        host, colon, port = netloc.partition(":")
        rest = colon + port
        labels = host.removesuffix(".").split(".")  # "example.com." is a full name
        if not host or "]" in netloc or not all(_LABEL.match(label) for label in labels):
            raise _bad(url, "has an empty or malformed host")
        if len(host) > 253:
            raise _bad(url, "has a host name over 253 characters")
    if not rest or rest == ":":  # "host:" has an empty port: the scheme's (RFC 3986 §3.2.3)
        return host, DEFAULT_PORTS[parts.scheme]
    number = ascii_int(rest[1:], max_digits=5) if rest.startswith(":") else None
    if number is None or not 1 <= number <= 65535:
        raise _bad(url, f"has a malformed port {rest!r}: expected 1-65535")
    return host, number


def refusal(address: IPAddress) -> str | None:
    """Why a webhook must not go to ``address``, or None if it is a public address."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded_ipv4(address):
            why = refusal(embedded)
            if why is not None:
                return f"it embeds {embedded}, {why}"
        if address in _COMPATIBLE:
            return "IPv4-compatible (deprecated, never routed)"
        if any(address in wrapper for wrapper in _WRAPPERS):
            return None  # its IPv4 address is public; the prefix is only a way to reach it
        if address.is_site_local:
            return "site-local"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "private or otherwise not globally reachable"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64 or address in _COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ip for ip in found if ip is not None]


async def resolve(url: str, *, allow_private: bool) -> Target:
    """Parse ``url``, resolve its host once and check every address it has.

    Raises ``InvalidRequest`` for a malformed URL, a host that does not resolve, or (unless
    ``allow_private``) any address that ``refusal`` refuses.
    """
    target = parse(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        raise InvalidRequest(f"callback_url host {target.host!r} does not resolve") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise InvalidRequest(f"callback_url host {target.host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise InvalidRequest(
                    f"callback_url resolves to a non-public address ({address}: {why}); "
                    "set JOBHUB_WEBHOOK_ALLOW_PRIVATE to allow it"
                )
    return Target(target.scheme, target.host, target.port, target.path, addresses[0])


def _bad(url: str, why: str) -> InvalidRequest:
    shown = url if len(url) <= 200 else url[:200] + "…"
    return InvalidRequest(f"callback_url {why}, got {shown!r}")
