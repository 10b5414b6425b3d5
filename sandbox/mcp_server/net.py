"""The server's outbound HTTP: one client, loopback targets only, no proxies, no redirects, short timeouts."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx

from sandbox.errors import SandboxError

TIMEOUT = httpx.Timeout(5.0, connect=2.0)


def is_loopback_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(url: str, what: str) -> str:
    """``url`` unchanged if it points at loopback; the sandbox never sends traffic anywhere else."""
    if not is_loopback_url(url):
        raise SandboxError(
            f"{what} {url!r} is not an http(s) URL on loopback",
            "the sandbox only talks to 127.0.0.0/8 or ::1: use a URL like http://127.0.0.1:<port>/...",
        )
    return url


def http_client() -> httpx.AsyncClient:
    """The client for keys, metadata, introspection, trust lists and usage reports (never a caller's token)."""
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False, follow_redirects=False)
