"""Public routes: health, the issuers MCP servers may trust, the key that signs security events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import Service

router = APIRouter()


@router.get("/health", tags=["public"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/trust/issuers", tags=["public"])
async def trusted_issuers(service: Service) -> schemas.TrustList:
    """The issuers of the tenants' agents (a realm, or a tenant's Hydra) MCP servers may trust, and the tenant each
    stands for; an issuer not listed here is never trusted."""
    tenants = service.tenants.agent_issuers()
    return schemas.TrustList(issuers=sorted(tenants), tenants=tenants)


@router.get("/.well-known/jwks.json", tags=["public"])
async def jwks(service: Service) -> dict[str, Any]:
    """The public key that signs security events (the SSF transmitter's `jwks_uri`)."""
    return service.context.signing_key.jwks()
