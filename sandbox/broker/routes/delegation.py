"""Delegated access: the people who let delegated agents act for them, and who did."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.post("/tenants/{tenant}/users", status_code=201, tags=["delegation"], responses=ERRORS)
async def add_user(tenant: str, body: schemas.UserIn, caller: Caller, service: Service) -> schemas.IssuedUser:
    """Add a person who may let delegated agents act for them, with at most these scopes (password shown once)."""
    return await service.delegation.create_user(caller, tenant, body.username, body.scopes, body.otp)


@router.get("/tenants/{tenant}/agents/{agent_id}/delegations", tags=["delegation"], responses=ERRORS)
async def delegations(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.DelegationsOut:
    """Which users let this delegated agent act for them, with which scopes (Keycloak's token exchanges)."""
    return await service.delegation.delegations(caller, tenant, agent_id)
