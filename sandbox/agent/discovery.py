"""From an MCP server's URL to the authorization servers that issue its tokens, as an MCP client finds them.

The server's protected resource metadata (RFC 9728) is read where its 401 challenge points
(``resource_metadata``), else at the well-known place for its path, else at the origin's. Each listed
authorization server's metadata is read in the order the MCP specification gives: RFC 8414 with the path
inserted, OpenID Connect discovery with the path inserted, then appended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from sandbox.agent.challenge import parse_challenges
from sandbox.agent.mcp_http import ACCEPT, message
from sandbox.errors import SandboxError

PROTECTED_RESOURCE = "/.well-known/oauth-protected-resource"
AUTHORIZATION_SERVER = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION = "/.well-known/openid-configuration"
_PROBE = message("ping", request_id=0)
_ACCEPT = {"Accept": ACCEPT, "Content-Type": "application/json"}


class DiscoveryFailed(SandboxError):
    pass


@dataclass(frozen=True)
class ProtectedResource:
    """What an MCP server says of itself (RFC 9728)."""

    resource: str
    authorization_servers: list[str]
    scopes_supported: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AuthorizationServer:
    """The parts of an authorization server's metadata (RFC 8414) a client-credentials agent uses."""

    issuer: str
    token_endpoint: str
    token_endpoint_auth_methods_supported: list[str] | None = None
    grant_types_supported: list[str] | None = None


def resource_metadata_urls(server_url: str, challenge_url: str | None) -> list[str]:
    """Where to look for the protected resource metadata, in order."""
    parts = urlsplit(server_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    candidates = [challenge_url] if challenge_url else []
    candidates += [f"{origin}{PROTECTED_RESOURCE}{path}" if path else None, f"{origin}{PROTECTED_RESOURCE}"]
    return list(dict.fromkeys(url for url in candidates if url))


def authorization_server_metadata_urls(issuer: str) -> list[str]:
    """Where to look for an issuer's metadata, in the order the MCP specification gives (2025-11-25)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return [f"{origin}{AUTHORIZATION_SERVER}", f"{origin}{OPENID_CONFIGURATION}"]
    return [
        f"{origin}{AUTHORIZATION_SERVER}{path}",
        f"{origin}{OPENID_CONFIGURATION}{path}",
        f"{origin}{path}{OPENID_CONFIGURATION}",
    ]


async def protected_resource(http: httpx.AsyncClient, server_url: str) -> ProtectedResource:
    """The server's protected resource metadata; DiscoveryFailed (one line) when it publishes none."""
    challenge_url = await _challenge_metadata_url(http, server_url)
    tried = []
    for url in resource_metadata_urls(server_url, challenge_url):
        document = await _document(http, url)
        tried.append(url)
        if document is not None and isinstance(document.get("authorization_servers"), list):
            return ProtectedResource(
                resource=str(document.get("resource") or server_url),
                authorization_servers=[str(a) for a in document["authorization_servers"]],
                scopes_supported=[str(s) for s in document.get("scopes_supported") or []],
            )
    raise DiscoveryFailed(
        f"{server_url} publishes no protected resource metadata naming its authorization servers "
        f"(looked at {', '.join(tried)})",
        "pass the authorization server with --issuer",
    )


async def authorization_server(http: httpx.AsyncClient, issuer: str) -> AuthorizationServer:
    """The issuer's metadata; DiscoveryFailed (one line) when none of the places has it."""
    for url in authorization_server_metadata_urls(issuer):
        document = await _document(http, url)
        if document is not None and document.get("token_endpoint"):
            methods = document.get("token_endpoint_auth_methods_supported")
            grants = document.get("grant_types_supported")
            return AuthorizationServer(
                issuer=str(document.get("issuer") or issuer),
                token_endpoint=str(document["token_endpoint"]),
                token_endpoint_auth_methods_supported=[str(m) for m in methods] if isinstance(methods, list) else None,
                grant_types_supported=[str(g) for g in grants] if isinstance(grants, list) else None,
            )
    raise DiscoveryFailed(
        f"no authorization server metadata with a token endpoint for {issuer}",
        "check the issuer URL (is the authorization server running?)",
    )


async def _challenge_metadata_url(http: httpx.AsyncClient, server_url: str) -> str | None:
    """The ``resource_metadata`` of the server's 401 to a request without a token, if it sends one."""
    try:
        response = await http.post(server_url, json=_PROBE, headers=_ACCEPT)
    except httpx.HTTPError as exc:
        raise DiscoveryFailed(
            f"the MCP server {server_url} is unreachable ({type(exc).__name__})", "start it"
        ) from None
    if response.status_code != 401:
        return None
    for header in response.headers.get_list("www-authenticate"):
        for challenge in parse_challenges(header):
            if challenge.scheme.lower() == "bearer" and challenge.get("resource_metadata"):
                return challenge.get("resource_metadata")
    return None


async def _document(http: httpx.AsyncClient, url: str) -> dict | None:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
