"""Dormancy: the review queue, the scan that makes idle agents dormant, the review that keeps or revokes them."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.get("/tenants/{tenant}/review-queue", tags=["dormancy"], responses=ERRORS)
async def review_queue(tenant: str, caller: Caller, service: Service) -> list[schemas.AgentOut]:
    return service.access_reviews.queue(caller, tenant)


@router.post("/tenants/{tenant}/dormancy/scan", tags=["dormancy"], responses=ERRORS)
async def scan(tenant: str, caller: Caller, service: Service) -> schemas.DormancyScan:
    """Mark agents without a token or a tool call in their dormancy period dormant (and disable them)."""
    return await service.dormancy.scan_dormancy(caller, tenant)


@router.post("/tenants/{tenant}/agents/{agent_id}/review", tags=["dormancy"], responses=ERRORS)
async def review(
    tenant: str, agent_id: str, body: schemas.ReviewIn, caller: Caller, service: Service
) -> schemas.AgentOut:
    """Keep (re-enable) or revoke a dormant agent."""
    return await service.dormancy.review(caller, tenant, agent_id, body.decision, body.reason)
