"""Usage reports from MCP servers, monitoring, MCP client configs and the audit log."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Request

from sandbox.agent.mcp_config import McpClientConfig
from sandbox.broker import schemas
from sandbox.broker.auth import AuthError
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.post("/usage", status_code=202, tags=["resource servers"], responses=ERRORS)
async def usage(
    body: schemas.UsageIn, request: Request, service: Service, authorization: Annotated[str | None, Header()] = None
) -> dict[str, int]:
    """Tool calls reported by an MCP server (bearer: the stack secret "usage-ingest")."""
    expected = f"Bearer {request.app.state.usage_secret}"
    if not authorization or not hmac.compare_digest(authorization.encode(), expected.encode()):
        raise AuthError(401, "invalid_token", "usage reports need the usage-ingest bearer secret")
    ingested = service.reporting.ingest_usage([e.model_dump() for e in body.events], body.resource)
    if ingested.refused_agents:
        await service.suspensions.after_usage(ingested.refused_agents)
    return {"accepted": ingested.stored}


@router.get("/tenants/{tenant}/agents/{agent_id}/monitoring", tags=["monitoring"], responses=ERRORS)
async def monitoring(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.MonitoringReport:
    """Failed token requests, denied tool calls, unused scopes and the credential's age of one agent."""
    return await service.reporting.monitoring(caller, tenant, agent_id)


@router.get("/tenants/{tenant}/monitoring", tags=["monitoring"], responses=ERRORS)
async def tenant_monitoring(tenant: str, caller: Caller, service: Service) -> list[schemas.MonitoringReport]:
    return await service.reporting.tenant_monitoring(caller, tenant)


@router.post(
    "/tenants/{tenant}/agents/{agent_id}/mcp-config",
    tags=["configs"],
    responses=ERRORS,
    response_model_exclude_none=True,  # the document as MCP hosts read it: no field that is not set
)
async def mcp_config(
    tenant: str, agent_id: str, body: schemas.ConfigIn, caller: Caller, service: Service
) -> McpClientConfig:
    """An MCP client config for the agent (credential by reference, never the secret)."""
    return service.reporting.generate_config(
        caller,
        tenant,
        agent_id,
        path=body.path,
        credential_source=body.credential_source,
        credential_reference_value=body.credential_reference,
    )


@router.get("/tenants/{tenant}/audit", tags=["audit"], responses=ERRORS)
async def audit_log(
    tenant: str, caller: Caller, service: Service, agent_id: str | None = None
) -> list[schemas.AuditEntryOut]:
    """The tenant's audit entries, oldest first, each with its hash and its predecessor's."""
    return await service.reporting.audit_log(caller, tenant, agent_id)
