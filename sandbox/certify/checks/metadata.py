"""prm-served, prm-content: the protected resource metadata (RFC 9728) an MCP client discovers the issuer by."""

from __future__ import annotations

from typing import Any

import httpx
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
)

from sandbox.certify.context import Context, check
from sandbox.certify.model import mcp, rfc
from sandbox.loopback import is_loopback_url


def metadata_urls(url: str) -> list[str]:
    """Where MCP clients look for a server's metadata: the path-inserted well-known URL, then the root one."""
    return build_protected_resource_metadata_discovery_urls(None, url)


def document(response: httpx.Response) -> dict[str, Any] | None:
    if response.status_code != 200 or not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def served_documents(ctx: Context) -> list[tuple[str, dict[str, Any], httpx.Response]]:
    found = []
    for url in metadata_urls(ctx.url):
        response = ctx.get(url)
        parsed = document(response)
        ctx.note(f"metadata at {url}", response)
        if parsed is not None:
            found.append((url, parsed, response))
    return found


@check(
    "prm-served",
    "MUST",
    "Serves protected resource metadata",
    "The RFC 9728 document is served as JSON at the path-inserted well-known URL, the root one, or both.",
    mcp("Protected Resource Metadata Discovery Requirements", "protected-resource-metadata-discovery-requirements"),
    rfc(9728, "3", "Obtaining Protected Resource Metadata"),
)
def prm_served(ctx: Context) -> None:
    found = served_documents(ctx)
    ctx.expect(
        "a JSON metadata document is served at " + " or ".join(metadata_urls(ctx.url)),
        bool(found),
        seen=f"served at: {', '.join(url for url, _, _ in found)}" if found else "served at neither",
    )


@check(
    "prm-content",
    "MUST",
    "Metadata names this resource and its authorization servers",
    "`resource` is identical to the server's canonical URL; `authorization_servers` lists at least one issuer, "
    "and each publishes its own metadata (RFC 8414 or OpenID Connect Discovery).",
    mcp("Authorization Server Location", "authorization-server-location"),
    rfc(9728, "3.3", "Protected Resource Metadata Validation"),
)
def prm_content(ctx: Context) -> None:
    found = served_documents(ctx)
    if not found:
        ctx.skip("no protected resource metadata is served (see prm-served)")
    for url, parsed, response in found:
        ctx.expect(
            f"resource in {url} is the canonical URL {ctx.url}",
            parsed.get("resource") == ctx.url,
            response,
            f"resource: {parsed.get('resource')!r}",
        )
    url, parsed, response = found[0]
    servers = parsed.get("authorization_servers")
    listed = isinstance(servers, list) and bool(servers) and all(isinstance(s, str) for s in servers)
    ctx.expect("authorization_servers lists at least one issuer", listed, response, f"{servers!r}")
    if not listed:
        return
    for server in servers:
        ctx.expect(f"authorization server {server} publishes metadata naming itself", publishes(ctx, server))
    issuer = ctx.world.issuer()
    ctx.expect(
        f"the sandbox issuer certify's agents belong to ({issuer}) is listed, so MCP clients find it",
        issuer in servers,
        response,
        warning=True,
    )


def publishes(ctx: Context, issuer: str) -> bool:
    if not is_loopback_url(issuer):
        return False  # the sandbox never sends traffic off loopback, so it cannot be checked
    for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, issuer):
        response = ctx.get(url)
        parsed = document(response)
        if parsed is not None and parsed.get("issuer") == issuer:
            ctx.note(f"metadata of {issuer}", response)
            return True
    return False
