"""Rotation with a grace period, and what depends on the credential before it."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.get("/tenants/{tenant}/agents/{agent_id}/dependencies", tags=["agents"], responses=ERRORS)
async def dependencies(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.Dependencies:
    """The MCP servers the agent has used and the configs generated for it (check before rotating)."""
    return service.rotation.dependencies(caller, tenant, agent_id)


@router.post("/tenants/{tenant}/agents/{agent_id}/rotate", tags=["agents"], responses=ERRORS)
async def rotate(
    tenant: str, agent_id: str, body: schemas.RotateIn, caller: Caller, service: Service
) -> schemas.Rotated:
    """Issue a new credential; the old one works until the grace ends."""
    return await service.rotation.rotate(caller, tenant, agent_id, body.grace_seconds, body.jwk, body.reason)


@router.post("/tenants/{tenant}/agents/{agent_id}/rotation/end", tags=["agents"], responses=ERRORS)
async def end_grace(
    tenant: str, agent_id: str, body: schemas.ReasonIn, caller: Caller, service: Service
) -> schemas.AgentOut:
    """End the rotation grace now: the old credential is rejected from here on."""
    return await service.rotation.end_grace(caller, tenant, agent_id, body.reason)
