"""Agents: the policy they are checked against, provisioning, role changes and approvals."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.get("/policy", tags=["policy"], responses=ERRORS)
async def policy(caller: Caller, service: Service) -> dict[str, Any]:
    """The role templates and policy in force."""
    return service.context.policy.as_dict()


@router.get("/tenants/{tenant}/agents", tags=["agents"], responses=ERRORS)
async def list_agents(
    tenant: str, caller: Caller, service: Service, status: schemas.AgentStatus | None = None
) -> list[schemas.AgentOut]:
    return service.agents.list_agents(caller, tenant, status)


@router.post("/tenants/{tenant}/agents", status_code=201, tags=["agents"], responses=ERRORS)
async def provision(tenant: str, body: schemas.ProvisionIn, caller: Caller, service: Service) -> schemas.Provisioned:
    """Provision an agent. The credential is in this answer only; it is never shown again."""
    return await service.agents.provision(caller, tenant, body.request())


@router.post("/tenants/{tenant}/policy/check", tags=["policy"], responses=ERRORS)
async def check(
    tenant: str, body: schemas.PolicyCheckIn, caller: Caller, service: Service
) -> list[schemas.PolicyCheckOut]:
    """Check agents against the policy without changing anything."""
    return service.agents.check_many(caller, tenant, [a.request() for a in body.agents])


@router.get("/tenants/{tenant}/agents/{agent_id}", tags=["agents"], responses=ERRORS)
async def get_agent(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.AgentOut:
    return service.agents.get_agent(caller, tenant, agent_id)


@router.post("/tenants/{tenant}/agents/{agent_id}/role", tags=["agents"], responses=ERRORS)
async def change_role(
    tenant: str, agent_id: str, body: schemas.RoleChangeIn, caller: Caller, service: Service
) -> schemas.AgentOut:
    """Change the agent's role: its next token carries the new role's scopes."""
    return await service.agents.change_role(caller, tenant, agent_id, body.role, body.environment, body.reason)


@router.post("/tenants/{tenant}/agents/{agent_id}/approve", tags=["approvals"], responses=ERRORS)
async def approve(
    tenant: str, agent_id: str, body: schemas.ReasonIn, caller: Caller, service: Service
) -> schemas.AgentOut:
    """Approve a pending agent (another admin than the requester, logged in with OTP)."""
    return await service.agents.approve(caller, tenant, agent_id, body.reason)


@router.post("/tenants/{tenant}/agents/{agent_id}/deny", tags=["approvals"], responses=ERRORS)
async def deny(
    tenant: str, agent_id: str, body: schemas.ReasonIn, caller: Caller, service: Service
) -> schemas.AgentOut:
    return await service.agents.deny(caller, tenant, agent_id, body.reason)
