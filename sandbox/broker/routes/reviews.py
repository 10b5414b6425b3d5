"""Lifecycle policy: access reviews by risk tier, and the credential of an automatic rotation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service, basic

router = APIRouter()


@router.get("/tenants/{tenant}/agents/{agent_id}/access-review", tags=["reviews"], responses=ERRORS)
async def access_review(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.AccessReviewOut:
    """The agent's access review: whether it is due, and the scopes it did not use in its tier's interval."""
    return service.access_reviews.recommendation(caller, tenant, agent_id)


@router.post("/tenants/{tenant}/agents/{agent_id}/access-review", tags=["reviews"], responses=ERRORS)
async def accept_access_review(
    tenant: str, agent_id: str, body: schemas.AccessReviewIn, caller: Caller, service: Service
) -> schemas.AgentOut:
    """Accept the review: remove the recommended scopes (or those named of them); the next token lacks them."""
    return await service.access_reviews.accept(caller, tenant, agent_id, body.remove_scopes, body.reason)


@router.post("/agent-credential", tags=["agents"], responses=ERRORS)
async def pick_up_credential(
    service: Service, authorization: Annotated[str | None, Header()] = None
) -> schemas.CredentialPickupOut:
    """An agent takes the new secret of the broker's automatic rotation, authenticating with its old one
    (HTTP Basic: client id and old secret), while the grace lasts."""
    client_id, secret = basic(authorization)
    return await service.credential_age.pick_up(client_id, secret)
