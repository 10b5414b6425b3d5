"""An agent's MCP session: find the server's authorization server, get a token with the agent's credential,
and talk to the server with the official MCP SDK client over Streamable HTTP.

With several authorization servers listed (one issuer per tenant), the agent's token comes from the one whose
token endpoint accepts its credential, or from the issuer it was told. A 401 or 403 of the server comes back
as :class:`McpRefused` (status and challenge, one line), never as the SDK's error group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from sandbox.agent.client_auth import Credential, NoCommonMethod
from sandbox.agent.discovery import (
    AuthorizationServer,
    DiscoveryFailed,
    ProtectedResource,
    authorization_server,
    protected_resource,
)
from sandbox.agent.dpop import DPoPKey
from sandbox.agent.tokens import Token, TokenClient, TokenEndpointUnavailable, TokenRefused
from sandbox.errors import SandboxError

#: Token errors that mean "not this authorization server's client": the next listed one is tried.
_NOT_MINE = {"invalid_client", "unauthorized_client"}


class McpRefused(SandboxError):
    """The MCP server answered 401 or 403."""

    def __init__(self, status: int, challenge: str) -> None:
        self.status = status
        self.challenge = challenge
        fix = "the agent lacks the scope named; change its role" if status == 403 else "check the agent's token"
        super().__init__(f"the MCP server refused: {status} {challenge or '(no challenge)'}", fix)


@dataclass(frozen=True)
class AgentToken:
    """A token for one MCP server, and where it came from."""

    token: Token
    issuer: str
    resource: str


async def obtain_token(
    server_url: str,
    credential: Credential,
    *,
    issuer: str | None = None,
    scope: str | None = None,
    dpop: DPoPKey | None = None,
    source: str | None = None,
) -> AgentToken:
    """A token the server at ``server_url`` should accept, found from its metadata (see the module).

    ``source``: the local address every request goes from (a network zone, such as 127.0.0.2).
    """
    transport = httpx.AsyncHTTPTransport(local_address=source) if source else None
    async with httpx.AsyncClient(timeout=10.0, trust_env=False, transport=transport) as http:
        try:
            resource = await protected_resource(http, server_url)
        except DiscoveryFailed:
            if issuer is None:
                raise
            resource = ProtectedResource(server_url, [issuer])
        issuers = [issuer] if issuer else resource.authorization_servers
        reasons: list[str] = []
        for candidate in issuers:
            try:
                metadata = await authorization_server(http, candidate)
                token = await _fetch(metadata, credential, scope, resource.resource, dpop, source)
            except (DiscoveryFailed, NoCommonMethod, TokenRefused) as failure:
                reasons.append(f"{candidate}: {failure}")
                if isinstance(failure, TokenRefused) and failure.error not in _NOT_MINE:
                    break  # this server knows the client and said no: asking others would hide why
                continue
            return AgentToken(token, metadata.issuer, resource.resource)
    raise SandboxError(
        f"no authorization server of {server_url} issued a token to {credential.client_id} ({'; '.join(reasons)})",
        "check the client id and credential, or name the agent's issuer with --issuer",
    )


async def _fetch(
    metadata: AuthorizationServer,
    credential: Credential,
    scope: str | None,
    resource: str,
    dpop: DPoPKey | None,
    source: str | None,
) -> Token:
    async with TokenClient(
        metadata.token_endpoint,
        credential,
        issuer=metadata.issuer,
        auth_methods=metadata.token_endpoint_auth_methods_supported,
        dpop=dpop,
        source=source,
    ) as client:
        try:
            token = await client.fetch(scope, resource=resource)
            if not _names(token, resource):
                # The IdP ignored RFC 8707 (Ory Hydra): ask for the server by the audience it grants on request.
                token = await client.fetch(scope, [resource])
            return token
        except TokenEndpointUnavailable as unavailable:
            raise SandboxError(str(unavailable), "check that the authorization server is running") from None


def _names(token: Token, resource: str) -> bool:
    """Whether the token's ``aud`` names the resource; an opaque token's is unknown, so taken as yes."""
    try:
        audience = token.claims().get("aud")
    except (ValueError, IndexError):
        return True
    return resource == audience or (isinstance(audience, list) and resource in audience)


class BearerAuth(httpx2.Auth):
    """Sends the agent's token on every request and remembers the server's last 401 or 403.

    With ``dpop`` (the key the token is bound to) the token goes as ``Authorization: DPoP`` and each request gets
    a proof of its own (RFC 9449 §7).
    """

    def __init__(self, access_token: str, dpop: DPoPKey | None = None) -> None:
        self._token = access_token
        self._dpop = dpop
        self.refusal: McpRefused | None = None

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        if self._dpop is None:
            request.headers["Authorization"] = f"Bearer {self._token}"
        else:
            request.headers.update(self._dpop.headers(request.method, str(request.url), self._token))
        response = yield request
        if response.status_code in (401, 403):
            self.refusal = McpRefused(response.status_code, response.headers.get("www-authenticate", ""))


@asynccontextmanager
async def mcp_session(
    server_url: str, access_token: str, dpop: DPoPKey | None = None, *, source: str | None = None
) -> AsyncIterator[Client]:
    """An initialized SDK client for the server; a 401/403 on the way in or out is raised as McpRefused.

    ``dpop``: the key the token is bound to (a proof goes with each request); ``source``: the local address to
    call from (a network zone, such as 127.0.0.2); the system's choice if None.
    """
    auth = BearerAuth(access_token, dpop)
    transport = httpx2.AsyncHTTPTransport(local_address=source) if source else None
    try:
        async with (
            httpx2.AsyncClient(auth=auth, trust_env=False, timeout=30.0, transport=transport) as http,
            Client(streamable_http_client(server_url, http_client=http)) as client,
        ):
            yield client
    except (MCPError, BaseExceptionGroup) as failure:
        if auth.refusal is not None:
            raise auth.refusal from None
        raise _flattened(failure) from None


def _flattened(failure: BaseException) -> BaseException:
    """The first real error of an exception group (the SDK's task groups wrap them)."""
    while isinstance(failure, BaseExceptionGroup) and failure.exceptions:
        failure = failure.exceptions[0]
    return failure


@asynccontextmanager
async def agent_session(
    server_url: str,
    credential: Credential,
    *,
    issuer: str | None = None,
    scope: str | None = None,
    dpop: DPoPKey | None = None,
    source: str | None = None,
) -> AsyncIterator[Client]:
    """An SDK client for the server, authenticated as the agent (token from discovery, see :func:`obtain_token`).

    ``dpop``: the agent's DPoP key; its token is then bound to it and every request carries a proof. ``source``:
    the local address (a network zone) to call from.
    """
    obtained = await obtain_token(server_url, credential, issuer=issuer, scope=scope, dpop=dpop, source=source)
    async with mcp_session(server_url, obtained.token.access_token, dpop, source=source) as client:
        yield client
