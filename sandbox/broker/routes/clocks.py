"""A tenant's clock (sandbox only): read it, move it forward."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.get("/tenants/{tenant}/clock", tags=["clock"], responses=ERRORS)
async def tenant_clock(tenant: str, caller: Caller, service: Service) -> schemas.ClockOut:
    """The tenant's time and how far its clock was moved."""
    return service.tenant_clock.show(caller, tenant)


@router.post("/tenants/{tenant}/clock", tags=["clock"], responses=ERRORS)
async def advance_clock(
    tenant: str, body: schemas.ClockAdvanceIn, caller: Caller, service: Service
) -> schemas.ClockOut:
    """Move the tenant's clock forward (sandbox only: SANDBOX_BROKER_MOVABLE_CLOCK; other tenants keep theirs)."""
    moved = service.tenant_clock.advance(caller, tenant, body.advance.delta(), body.reason)
    await service.credential_age.sweep(tenant)  # credentials the move made old are flagged and rotated now
    return moved
