"""Loopback only: the one check that a host or URL stays on 127.0.0.0/8 or ::1 (or ``localhost``)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx

from sandbox.errors import SandboxError

#: Connection limits of a client calling the sandbox's own servers: an idle connection is dropped after 2 s,
#: before the server (uvicorn: 5 s keep-alive) could close it just as a request goes out on it (a ReadError).
KEEPALIVE = httpx.Limits(keepalive_expiry=2.0)


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address; a name or a malformed address is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return is_loopback_host(host)


def require_loopback(url: str, what: str) -> str:
    """``url`` unchanged if it points at loopback; the sandbox never sends traffic anywhere else."""
    if not is_loopback_url(url):
        raise SandboxError(
            f"{what} {url!r} is not an http(s) URL on loopback",
            "the sandbox only talks to 127.0.0.0/8 or ::1: use a URL like http://127.0.0.1:<port>/...",
        )
    return url
