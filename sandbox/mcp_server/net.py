"""The server's outbound HTTP: one client, loopback targets only, no proxies, no redirects, short timeouts."""

from __future__ import annotations

import httpx

from sandbox.loopback import KEEPALIVE

TIMEOUT = httpx.Timeout(5.0, connect=2.0)


def http_client() -> httpx.AsyncClient:
    """The client for keys, metadata, introspection, trust lists and usage reports (never a caller's token)."""
    return httpx.AsyncClient(timeout=TIMEOUT, limits=KEEPALIVE, trust_env=False, follow_redirects=False)
