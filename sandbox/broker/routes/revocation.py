"""Revocation, and giving a suspended agent its access back."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.post("/tenants/{tenant}/agents/{agent_id}/revoke", tags=["revocation"], responses=ERRORS)
async def revoke_in_tenant(
    tenant: str, agent_id: str, caller: Caller, service: Service, body: schemas.RevokeIn | None = None
) -> schemas.Revoked:
    """Revoke the agent (idempotent: revoking a revoked agent answers 200 and changes nothing; body optional)."""
    body = body or schemas.RevokeIn()
    return await service.revocation.revoke(
        caller, agent_id, tenant=tenant, reason=body.reason, verify_token=body.verify_token
    )


@router.post("/revoke/{agent_id}", tags=["revocation"], responses=ERRORS)
async def revoke(
    agent_id: str, caller: Caller, service: Service, body: schemas.RevokeIn | None = None
) -> schemas.Revoked:
    """Revoke by agent id alone (the tenant comes from the caller's token); the body is optional."""
    body = body or schemas.RevokeIn()
    return await service.revocation.revoke(caller, agent_id, reason=body.reason, verify_token=body.verify_token)


@router.post("/tenants/{tenant}/agents/{agent_id}/resume", tags=["revocation"], responses=ERRORS)
async def resume(
    tenant: str, agent_id: str, caller: Caller, service: Service, body: schemas.ReasonIn | None = None
) -> schemas.AgentOut:
    """Give a suspended agent its access back (needs a login with MFA); revoke it instead with /revoke."""
    reason = body.reason if body else ""
    return await service.suspensions.resume(caller, tenant, agent_id, reason)
