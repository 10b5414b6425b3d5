"""The comparison server for ``auth-overhead``: the ``mcp`` SDK's own bearer-auth middleware (``mcp.server.auth``:
``BearerAuthBackend`` and ``RequireAuthMiddleware``, as ``MCPServer`` sets them up for a resource server) around
the same tool, with a TokenVerifier equivalent to the reference server's ``jwt`` mode: the same ``JwtVerifier``
(signature once per token, then issuer trust, key, expiry, audience and lifetime on every call). Benchmarks only.

Run as ``python -m sandbox.bench.sdk_server --port P --issuer URL --scope S``; it binds 127.0.0.1 and serves
``/mcp`` (JSON responses, like the reference server) and ``/health``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Annotated, Any, Literal

import httpx
import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from pydantic import AnyHttpUrl, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.config import load_settings
from sandbox.jwt_signature import InvalidToken, KeyCache, VerificationUnavailable
from sandbox.mcp_server.discovery import AuthorizationServers
from sandbox.mcp_server.tenant_data import SAVED_QUERIES, TenantDirectory
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.verification import JwtVerifier, Policy
from sandbox.toolmap import ToolMap

HOST = "127.0.0.1"


class EquivalentVerifier:
    """The SDK's TokenVerifier protocol over the reference server's own ``jwt``-mode verifier."""

    def __init__(self, verifier: JwtVerifier, resource: str) -> None:
        self._verifier = verifier
        self._resource = resource

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = await self._verifier.verify(token)
        except (InvalidToken, VerificationUnavailable):
            return None  # the SDK answers 401 for any token it cannot accept
        return principal.access_token().model_copy(update={"resource": self._resource})


def build(port: int, issuer: str, scope: str) -> Any:
    settings = load_settings()
    resource = f"http://{HOST}:{port}/mcp"
    client = httpx.AsyncClient(timeout=10.0)
    servers = AuthorizationServers(client)
    tenant = settings.tenant_named_by(issuer) or issuer  # the one issuer it trusts: its tokens are that tenant's
    trust = TrustedIssuers(
        (issuer,),
        client,
        names={issuer: tenant},
        trust_list_url=None,
        refetch_interval=settings.mcp_jwks_refetch_interval,
    )
    caches: dict[str, KeyCache] = {}

    def keys(name: str) -> KeyCache:
        async def uri() -> str:
            return await servers.endpoint(name, "jwks_uri")

        return caches.setdefault(name, KeyCache(client, uri, refetch_interval=settings.mcp_jwks_refetch_interval))

    policy = Policy(resource, settings.mcp_token_algorithms, settings.mcp_leeway, settings.mcp_max_token_lifetime)
    verifier = EquivalentVerifier(JwtVerifier(policy, trust, keys), resource)
    auth = AuthSettings(
        issuer_url=AnyHttpUrl(issuer),
        resource_server_url=AnyHttpUrl(resource),
        required_scopes=[scope],
        validate_token_resource=True,
    )
    mcp = MCPServer("mcp-sandbox-bench-sdk-auth", token_verifier=verifier, auth=auth)
    directory = TenantDirectory(ToolMap.load(settings.tools_file).environments)

    @mcp.tool(name="analytics.query")
    async def analytics_query(
        ctx: Context,
        query: Annotated[Literal[SAVED_QUERIES], Field(description="A saved query.")],  # type: ignore[valid-type]
        days: Annotated[int, Field(ge=1, le=90)] = 7,
    ) -> dict[str, Any]:
        # The same tenant data and answer as the reference server's tool (the benchmark asks for this query).
        data = directory[tenant]
        rows = [{"day": e["day"], "active_users": e["active_users"]} for e in data.events[-days:]]
        return {"tenant": data.tenant, "query": query, "days": days, "rows": rows}

    app = mcp.streamable_http_app(json_response=True, host=HOST)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "auth": "mcp SDK bearer middleware"})

    app.router.routes.append(Route("/health", health))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--scope", required=True)
    options = parser.parse_args()
    app = build(options.port, options.issuer, options.scope)
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=options.port, log_level="warning"))
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
