"""Tenants, their admins, and the resource servers agents may be given as audience."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.broker import schemas
from sandbox.broker.routes.common import ERRORS, Caller, Service

router = APIRouter()


@router.post("/tenants", status_code=201, tags=["tenants"], responses=ERRORS)
async def create_tenant(body: schemas.TenantIn, caller: Caller, service: Service) -> schemas.TenantCreated:
    """Create a tenant (a Keycloak realm from the template) and its first admins (operator only)."""
    return await service.tenants.create_tenant(caller, body.name, [a.spec() for a in body.admins], body.idp)


@router.get("/tenants", tags=["tenants"], responses=ERRORS)
async def list_tenants(caller: Caller, service: Service) -> list[schemas.TenantOut]:
    return service.tenants.list_tenants(caller)


@router.delete("/tenants/{tenant}", status_code=204, tags=["tenants"], responses=ERRORS)
async def delete_tenant(tenant: str, caller: Caller, service: Service) -> None:
    """Delete a tenant (operator): its live agents are revoked, its realm removed; its audit stays."""
    await service.tenants.delete_tenant(caller, tenant)


@router.post("/tenants/{tenant}/admins", status_code=201, tags=["tenants"], responses=ERRORS)
async def add_admin(tenant: str, body: schemas.AdminIn, caller: Caller, service: Service) -> schemas.IssuedAdmin:
    """Add a human admin to the tenant (a tenant admin needs MFA for it)."""
    return await service.tenants.create_admin(caller, tenant, body.spec())


@router.get("/resource-servers", tags=["resource servers"], responses=ERRORS)
async def list_servers(caller: Caller, service: Service) -> list[schemas.ResourceServerOut]:
    return service.tenants.resource_servers()


@router.post("/resource-servers", status_code=201, tags=["resource servers"], responses=ERRORS)
async def register_server(
    body: schemas.ResourceServerIn, caller: Caller, service: Service
) -> schemas.ResourceServerOut:
    """Register an MCP server: agents may get it as audience; it receives revocation events."""
    return service.tenants.register_resource_server(caller, body.url, body.events_url)


@router.delete("/resource-servers", status_code=204, tags=["resource servers"], responses=ERRORS)
async def unregister_server(url: str, caller: Caller, service: Service) -> None:
    """Forget a resource server (operator only)."""
    service.tenants.unregister_resource_server(caller, url)
