"""Where an issuer's endpoints are: OpenID Connect discovery (``<issuer>/.well-known/openid-configuration``).

Nothing outside the IdP adapter spells an IdP's URL layout: clients read the token, authorization and key
endpoints from the issuer's own metadata, fetched once per issuer (loopback only) and kept for the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from sandbox.errors import SandboxError
from sandbox.loopback import require_loopback

TIMEOUT = 15.0


@dataclass(frozen=True)
class IssuerMetadata:
    issuer: str
    token_endpoint: str
    authorization_endpoint: str
    jwks_uri: str

    @classmethod
    def parse(cls, issuer: str, document: Any) -> IssuerMetadata:
        names = ("token_endpoint", "authorization_endpoint", "jwks_uri")
        if not isinstance(document, dict) or not all(isinstance(document.get(name), str) for name in names):
            raise SandboxError(
                f"the OpenID configuration of {issuer} lacks {', '.join(names)}",
                "check that the issuer is an OpenID Connect provider (is the realm there?)",
            )
        return cls(issuer, *(require_loopback(document[name], name) for name in names))


_known: dict[str, IssuerMetadata] = {}


def _configuration_url(issuer: str) -> str:
    return f"{require_loopback(issuer, 'issuer').rstrip('/')}/.well-known/openid-configuration"


def _read(issuer: str, response: httpx.Response) -> IssuerMetadata:
    if response.status_code != 200:
        raise SandboxError(
            f"{issuer} serves no OpenID configuration (HTTP {response.status_code})",
            "check the issuer URL and that the IdP is up (`mcp-sandbox status`)",
        )
    try:
        document = response.json()
    except ValueError:
        document = None
    _known[issuer] = IssuerMetadata.parse(issuer, document)
    return _known[issuer]


def _unreachable(issuer: str, exc: httpx.HTTPError) -> SandboxError:
    return SandboxError(
        f"the OpenID configuration of {issuer} is unreachable ({type(exc).__name__})",
        "start the stack with `mcp-sandbox up` (or check SANDBOX_KEYCLOAK_URL)",
    )


def discover(issuer: str) -> IssuerMetadata:
    """The issuer's endpoints (fetched on first use)."""
    if issuer not in _known:
        try:
            response = httpx.get(_configuration_url(issuer), timeout=TIMEOUT, trust_env=False)
        except httpx.HTTPError as exc:
            raise _unreachable(issuer, exc) from exc
        return _read(issuer, response)
    return _known[issuer]


async def discover_async(issuer: str, http: httpx.AsyncClient | None = None) -> IssuerMetadata:
    """:func:`discover` without blocking the event loop; ``http`` is the caller's client, if it has one."""
    if issuer not in _known:
        try:
            if http is not None:
                response = await http.get(_configuration_url(issuer))
            else:
                async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
                    response = await client.get(_configuration_url(issuer))
        except httpx.HTTPError as exc:
            raise _unreachable(issuer, exc) from exc
        return _read(issuer, response)
    return _known[issuer]
