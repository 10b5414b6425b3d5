"""The broker's HTTP API (FastAPI; the OpenAPI document is served at ``/openapi.json``).

Run it with ``mcp-sandbox broker serve``; the stack starts it as the ``broker`` component.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import unquote_plus

import httpx
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sandbox.broker import schemas, validation
from sandbox.broker.auth import Authenticator, AuthError, Principal
from sandbox.broker.clock import Clock, SystemClock
from sandbox.broker.errors import BrokerError, MfaRequired
from sandbox.broker.events import SigningKey
from sandbox.broker.policy import Policy
from sandbox.broker.service import BrokerService
from sandbox.broker.ssf_api import router as ssf_router
from sandbox.broker.store import Database, default_database_url
from sandbox.broker.validation import invalid_request_body
from sandbox.config import Settings, load_settings
from sandbox.errors import SandboxError
from sandbox.http_limits import BodySizeLimit, HeaderSizeLimit
from sandbox.idp import tenant_identity_providers
from sandbox.idp.provider import IdentityProvider, IdpUnavailable
from sandbox.idp.realm import ADMIN_CLIENT_ID
from sandbox.stack_secrets import USAGE_INGEST_SECRET, Secrets
from sandbox.toolmap import ToolMap

log = logging.getLogger(__name__)


def build_service(
    settings: Settings, http: httpx.AsyncClient, *, adapter: IdentityProvider | None = None, clock: Clock | None = None
) -> BrokerService:
    tools = ToolMap.load(settings.tools_file)
    db = Database(settings.broker_database_url or default_database_url(settings))
    db.create_schema()
    return BrokerService(
        settings=settings,
        db=db,
        adapter=adapter or tenant_identity_providers(settings),
        policy=Policy.load(settings.policy_file, tools),
        tools=tools,
        clock=clock or SystemClock(),
        signing_key=SigningKey.load_or_create(settings.signing_key_file),
        http=http,
    )


async def _adopt_sandbox_tenants(service: BrokerService) -> None:
    for tenant in service.context.settings.tenants:
        try:
            if await service.tenants.adopt_tenant(tenant):
                log.info("adopted sandbox tenant", extra={"tenant": tenant})
        except IdpUnavailable as exc:
            log.warning("Keycloak unreachable at start-up", extra={"tenant": tenant, "reason": exc.cause})
            await service.tenants.adopt_tenant(tenant, check=False)


async def _housekeeping(service: BrokerService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            done = await service.housekeeping()
            if any(done.values()):
                log.info("housekeeping", extra=done)
        except Exception as exc:  # the loop outlives any one failure; the next round retries
            log.warning("housekeeping failed", extra={"reason": f"{type(exc).__name__}: {exc}"})


def create_app(
    settings: Settings | None = None, *, adapter: IdentityProvider | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10.0) as http:
            service = build_service(settings, http, adapter=adapter, clock=clock)
            for server in settings.mcp_servers:  # the stack's reference servers, one per revocation mode
                service.tenants.register_resource_server(None, server.url, server.events_url)
            await _adopt_sandbox_tenants(service)
            app.state.service = service
            app.state.transmitter = service.context.transmitter
            app.state.usage_secret = Secrets(settings).get_or_create(USAGE_INGEST_SECRET)
            app.state.authenticator = Authenticator(
                master_issuer=settings.issuer("master"),
                operator_client_id=settings.keycloak_admin_client_id or ADMIN_CLIENT_ID,
                tenant_issuers=service.tenants.tenant_issuers,
                http=http,
            )
            task = asyncio.create_task(_housekeeping(service, settings.broker_housekeeping_interval))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                service.context.db.dispose()

    app = FastAPI(
        title="mcp-sandbox credential broker",
        version="1",
        description="The control plane of agent identities: tenants, agents, rotation, revocation, dormancy, "
        "approvals, audit and MCP client configs. Admin endpoints take a bearer token from the tenant's "
        "Keycloak realm (client sandbox-broker-admin); privileged acts need a login with OTP.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _add_routes(app)
    app.include_router(ssf_router)
    app.add_middleware(BodySizeLimit)  # 413 over 1 MiB
    app.add_middleware(HeaderSizeLimit)  # 431 over 16 KiB of headers, before anything reads them
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BrokerError)
    async def broker_error(_: Request, exc: BrokerError) -> JSONResponse:
        headers = {}
        if isinstance(exc, MfaRequired):
            headers["WWW-Authenticate"] = f'Bearer error="{exc.code}", error_description="{exc.cause}"'
        body = {"error": exc.code, "detail": str(exc), "cause": exc.cause, "fix": exc.fix, **exc.details}
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(invalid_request_body(exc.errors()), status_code=validation.STATUS)

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": f'Bearer error="{exc.error}", error_description="{exc.description}"'}
        return JSONResponse({"error": exc.error, "detail": exc.description}, status_code=exc.status, headers=headers)

    @app.exception_handler(SandboxError)
    async def sandbox_error(_: Request, exc: SandboxError) -> JSONResponse:
        status = 503 if isinstance(exc, IdpUnavailable) else 500
        return JSONResponse({"error": "unavailable" if status == 503 else "internal", "detail": str(exc)}, status)


async def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.authenticate(authorization)


def _service(request: Request) -> BrokerService:
    return request.app.state.service  # type: ignore[no-any-return]


def _basic(authorization: str | None) -> tuple[str, str]:
    """An agent's client id and secret from HTTP Basic (RFC 6749 2.3.1: each form-urlencoded)."""
    if authorization and authorization.lower().startswith("basic "):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            client_id, _, secret = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
            if client_id and secret:
                return unquote_plus(client_id), unquote_plus(secret)
    raise AuthError(401, "invalid_client", "send the agent's client id and current secret as HTTP Basic")


Caller = Annotated[Principal, Depends(_principal)]
Service = Annotated[BrokerService, Depends(_service)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.Error} for code in (400, 401, 403, 404, 409, 422, 503)
}


def _add_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["public"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/trust/issuers", tags=["public"])
    async def trusted_issuers(service: Service) -> dict[str, list[str]]:
        """The issuers of the tenants' agents (a realm, or a tenant's Hydra) MCP servers may trust; an issuer not
        listed here is never trusted."""
        return {"issuers": sorted(service.tenants.agent_issuers())}

    @app.get("/.well-known/jwks.json", tags=["public"])
    async def jwks(service: Service) -> dict[str, Any]:
        """The public key that signs security events (the SSF transmitter's `jwks_uri`)."""
        return service.context.signing_key.jwks()

    @app.post("/usage", status_code=202, tags=["resource servers"], responses=ERRORS)
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

    @app.get("/policy", tags=["policy"], responses=ERRORS)
    async def policy(caller: Caller, service: Service) -> dict[str, Any]:
        """The role templates and policy in force."""
        return service.context.policy.as_dict()

    @app.post("/tenants", status_code=201, tags=["tenants"], responses=ERRORS)
    async def create_tenant(body: schemas.TenantIn, caller: Caller, service: Service) -> schemas.TenantCreated:
        """Create a tenant (a Keycloak realm from the template) and its first admins (operator only)."""
        created = await service.tenants.create_tenant(caller, body.name, [a.spec() for a in body.admins], body.idp)
        return schemas.TenantCreated.model_validate(created)

    @app.get("/tenants", tags=["tenants"], responses=ERRORS)
    async def list_tenants(caller: Caller, service: Service) -> list[schemas.TenantOut]:
        return [schemas.TenantOut.model_validate(t) for t in service.tenants.list_tenants(caller)]

    @app.delete("/tenants/{tenant}", status_code=204, tags=["tenants"], responses=ERRORS)
    async def delete_tenant(tenant: str, caller: Caller, service: Service) -> None:
        """Delete a tenant (operator): its live agents are revoked, its realm removed; its audit stays."""
        await service.tenants.delete_tenant(caller, tenant)

    @app.post("/tenants/{tenant}/admins", status_code=201, tags=["tenants"], responses=ERRORS)
    async def add_admin(tenant: str, body: schemas.AdminIn, caller: Caller, service: Service) -> schemas.IssuedAdmin:
        """Add a human admin to the tenant (a tenant admin needs MFA for it)."""
        return schemas.IssuedAdmin.model_validate(await service.tenants.create_admin(caller, tenant, body.spec()))

    @app.post("/tenants/{tenant}/users", status_code=201, tags=["delegation"], responses=ERRORS)
    async def add_user(tenant: str, body: schemas.UserIn, caller: Caller, service: Service) -> schemas.IssuedUser:
        """Add a person who may let delegated agents act for them, with at most these scopes (password shown once)."""
        issued = await service.delegation.create_user(caller, tenant, body.username, body.scopes, body.otp)
        return schemas.IssuedUser.model_validate(issued)

    @app.get("/tenants/{tenant}/clock", tags=["clock"], responses=ERRORS)
    async def tenant_clock(tenant: str, caller: Caller, service: Service) -> schemas.ClockOut:
        """The tenant's time and how far its clock was moved."""
        return schemas.ClockOut.model_validate(service.clocks.tenant_clock(caller, tenant))

    @app.post("/tenants/{tenant}/clock", tags=["clock"], responses=ERRORS)
    async def advance_clock(
        tenant: str, body: schemas.ClockAdvanceIn, caller: Caller, service: Service
    ) -> schemas.ClockOut:
        """Move the tenant's clock forward (sandbox only: SANDBOX_BROKER_MOVABLE_CLOCK; other tenants keep theirs)."""
        moved = service.clocks.advance_clock(caller, tenant, body.advance.delta(), body.reason)
        await service.credential_age.sweep(tenant)  # credentials the move made old are flagged and rotated now
        return schemas.ClockOut.model_validate(moved)

    @app.get("/resource-servers", tags=["resource servers"], responses=ERRORS)
    async def list_servers(caller: Caller, service: Service) -> list[schemas.ResourceServerOut]:
        return [schemas.ResourceServerOut.model_validate(s) for s in service.tenants.resource_servers()]

    @app.post("/resource-servers", status_code=201, tags=["resource servers"], responses=ERRORS)
    async def register_server(
        body: schemas.ResourceServerIn, caller: Caller, service: Service
    ) -> schemas.ResourceServerOut:
        """Register an MCP server: agents may get it as audience; it receives revocation events."""
        return schemas.ResourceServerOut.model_validate(
            service.tenants.register_resource_server(caller, body.url, body.events_url)
        )

    @app.delete("/resource-servers", status_code=204, tags=["resource servers"], responses=ERRORS)
    async def unregister_server(url: str, caller: Caller, service: Service) -> None:
        """Forget a resource server (operator only)."""
        service.tenants.unregister_resource_server(caller, url)

    @app.get("/tenants/{tenant}/agents", tags=["agents"], responses=ERRORS)
    async def list_agents(
        tenant: str, caller: Caller, service: Service, status: schemas.AgentStatus | None = None
    ) -> list[schemas.AgentOut]:
        return [schemas.AgentOut.model_validate(a) for a in service.agents.list_agents(caller, tenant, status)]

    @app.post("/tenants/{tenant}/agents", status_code=201, tags=["agents"], responses=ERRORS)
    async def provision(
        tenant: str, body: schemas.ProvisionIn, caller: Caller, service: Service
    ) -> schemas.Provisioned:
        """Provision an agent. The credential is in this answer only; it is never shown again."""
        return schemas.Provisioned.model_validate(await service.agents.provision(caller, tenant, body.request()))

    @app.post("/tenants/{tenant}/policy/check", tags=["policy"], responses=ERRORS)
    async def check(
        tenant: str, body: schemas.PolicyCheckIn, caller: Caller, service: Service
    ) -> list[schemas.PolicyCheckOut]:
        """Check agents against the policy without changing anything."""
        results = service.agents.check_many(caller, tenant, [a.request() for a in body.agents])
        return [schemas.PolicyCheckOut.model_validate(r) for r in results]

    @app.get("/tenants/{tenant}/agents/{agent_id}", tags=["agents"], responses=ERRORS)
    async def get_agent(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.AgentOut:
        return schemas.AgentOut.model_validate(service.agents.get_agent(caller, tenant, agent_id))

    @app.post("/tenants/{tenant}/agents/{agent_id}/role", tags=["agents"], responses=ERRORS)
    async def change_role(
        tenant: str, agent_id: str, body: schemas.RoleChangeIn, caller: Caller, service: Service
    ) -> schemas.AgentOut:
        """Change the agent's role: its next token carries the new role's scopes."""
        changed = await service.agents.change_role(caller, tenant, agent_id, body.role, body.environment, body.reason)
        return schemas.AgentOut.model_validate(changed)

    @app.get("/tenants/{tenant}/agents/{agent_id}/dependencies", tags=["agents"], responses=ERRORS)
    async def dependencies(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.Dependencies:
        """The MCP servers the agent has used and the configs generated for it (check before rotating)."""
        return schemas.Dependencies.model_validate(service.rotation.dependencies(caller, tenant, agent_id))

    @app.post("/tenants/{tenant}/agents/{agent_id}/rotate", tags=["agents"], responses=ERRORS)
    async def rotate(
        tenant: str, agent_id: str, body: schemas.RotateIn, caller: Caller, service: Service
    ) -> schemas.Rotated:
        """Issue a new credential; the old one works until the grace ends."""
        rotated = await service.rotation.rotate(caller, tenant, agent_id, body.grace_seconds, body.jwk, body.reason)
        return schemas.Rotated.model_validate(rotated)

    @app.post("/tenants/{tenant}/agents/{agent_id}/rotation/end", tags=["agents"], responses=ERRORS)
    async def end_grace(
        tenant: str, agent_id: str, body: schemas.ReasonIn, caller: Caller, service: Service
    ) -> schemas.AgentOut:
        """End the rotation grace now: the old credential is rejected from here on."""
        return schemas.AgentOut.model_validate(await service.rotation.end_grace(caller, tenant, agent_id, body.reason))

    @app.post("/tenants/{tenant}/agents/{agent_id}/approve", tags=["approvals"], responses=ERRORS)
    async def approve(
        tenant: str, agent_id: str, body: schemas.ReasonIn, caller: Caller, service: Service
    ) -> schemas.AgentOut:
        """Approve a pending agent (another admin than the requester, logged in with OTP)."""
        return schemas.AgentOut.model_validate(await service.agents.approve(caller, tenant, agent_id, body.reason))

    @app.post("/tenants/{tenant}/agents/{agent_id}/deny", tags=["approvals"], responses=ERRORS)
    async def deny(
        tenant: str, agent_id: str, body: schemas.ReasonIn, caller: Caller, service: Service
    ) -> schemas.AgentOut:
        return schemas.AgentOut.model_validate(await service.agents.deny(caller, tenant, agent_id, body.reason))

    @app.post("/tenants/{tenant}/agents/{agent_id}/revoke", tags=["revocation"], responses=ERRORS)
    async def revoke_in_tenant(
        tenant: str, agent_id: str, caller: Caller, service: Service, body: schemas.RevokeIn | None = None
    ) -> schemas.Revoked:
        """Revoke the agent (idempotent: revoking a revoked agent answers 200 and changes nothing; body optional)."""
        body = body or schemas.RevokeIn()
        result = await service.revocation.revoke(
            caller, agent_id, tenant=tenant, reason=body.reason, verify_token=body.verify_token
        )
        return schemas.Revoked.model_validate(result)

    @app.post("/revoke/{agent_id}", tags=["revocation"], responses=ERRORS)
    async def revoke(
        agent_id: str, caller: Caller, service: Service, body: schemas.RevokeIn | None = None
    ) -> schemas.Revoked:
        """Revoke by agent id alone (the tenant comes from the caller's token); the body is optional."""
        body = body or schemas.RevokeIn()
        result = await service.revocation.revoke(caller, agent_id, reason=body.reason, verify_token=body.verify_token)
        return schemas.Revoked.model_validate(result)

    @app.post("/tenants/{tenant}/agents/{agent_id}/resume", tags=["revocation"], responses=ERRORS)
    async def resume(
        tenant: str, agent_id: str, caller: Caller, service: Service, body: schemas.ReasonIn | None = None
    ) -> schemas.AgentOut:
        """Give a suspended agent its access back (needs a login with MFA); revoke it instead with /revoke."""
        reason = body.reason if body else ""
        return schemas.AgentOut.model_validate(await service.suspensions.resume(caller, tenant, agent_id, reason))

    @app.get("/tenants/{tenant}/agents/{agent_id}/delegations", tags=["delegation"], responses=ERRORS)
    async def delegations(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.DelegationsOut:
        """Which users let this delegated agent act for them, with which scopes (Keycloak's token exchanges)."""
        return schemas.DelegationsOut.model_validate(await service.delegation.delegations(caller, tenant, agent_id))

    @app.get("/tenants/{tenant}/review-queue", tags=["dormancy"], responses=ERRORS)
    async def review_queue(tenant: str, caller: Caller, service: Service) -> list[schemas.AgentOut]:
        return [schemas.AgentOut.model_validate(a) for a in service.access_reviews.queue(caller, tenant)]

    @app.post("/tenants/{tenant}/dormancy/scan", tags=["dormancy"], responses=ERRORS)
    async def scan(tenant: str, caller: Caller, service: Service) -> schemas.DormancyScan:
        """Mark agents without a token or a tool call in their dormancy period dormant (and disable them)."""
        return schemas.DormancyScan.model_validate(await service.dormancy.scan_dormancy(caller, tenant))

    @app.post("/tenants/{tenant}/agents/{agent_id}/review", tags=["dormancy"], responses=ERRORS)
    async def review(
        tenant: str, agent_id: str, body: schemas.ReviewIn, caller: Caller, service: Service
    ) -> schemas.AgentOut:
        """Keep (re-enable) or revoke a dormant agent."""
        reviewed = await service.dormancy.review(caller, tenant, agent_id, body.decision, body.reason)
        return schemas.AgentOut.model_validate(reviewed)

    @app.get("/tenants/{tenant}/agents/{agent_id}/monitoring", tags=["monitoring"], responses=ERRORS)
    async def monitoring(tenant: str, agent_id: str, caller: Caller, service: Service) -> dict[str, Any]:
        """Failed token requests, denied tool calls, unused scopes and the credential's age of one agent."""
        report = await service.reporting.monitoring(caller, tenant, agent_id)
        report["credential_age"] = service.credential_age.report_of(agent_id)
        return report

    # Lifecycle policy: access reviews by risk tier, and the credential of an automatic rotation.
    @app.get("/tenants/{tenant}/agents/{agent_id}/access-review", tags=["reviews"], responses=ERRORS)
    async def access_review(tenant: str, agent_id: str, caller: Caller, service: Service) -> schemas.AccessReviewOut:
        """The agent's access review: whether it is due, and the scopes it did not use in its tier's interval."""
        return schemas.AccessReviewOut.model_validate(service.access_reviews.recommendation(caller, tenant, agent_id))

    @app.post("/tenants/{tenant}/agents/{agent_id}/access-review", tags=["reviews"], responses=ERRORS)
    async def accept_access_review(
        tenant: str, agent_id: str, body: schemas.AccessReviewIn, caller: Caller, service: Service
    ) -> schemas.AgentOut:
        """Accept the review: remove the recommended scopes (or those named of them); the next token lacks them."""
        accepted = await service.access_reviews.accept(caller, tenant, agent_id, body.remove_scopes, body.reason)
        return schemas.AgentOut.model_validate(accepted)

    @app.post("/agent-credential", tags=["agents"], responses=ERRORS)
    async def pick_up_credential(
        service: Service, authorization: Annotated[str | None, Header()] = None
    ) -> schemas.CredentialPickupOut:
        """An agent takes the new secret of the broker's automatic rotation, authenticating with its old one
        (HTTP Basic: client id and old secret), while the grace lasts."""
        client_id, secret = _basic(authorization)
        return schemas.CredentialPickupOut.model_validate(await service.credential_age.pick_up(client_id, secret))

    @app.get("/tenants/{tenant}/monitoring", tags=["monitoring"], responses=ERRORS)
    async def tenant_monitoring(tenant: str, caller: Caller, service: Service) -> list[dict[str, Any]]:
        return await service.reporting.tenant_monitoring(caller, tenant)

    @app.post("/tenants/{tenant}/agents/{agent_id}/mcp-config", tags=["configs"], responses=ERRORS)
    async def mcp_config(
        tenant: str, agent_id: str, body: schemas.ConfigIn, caller: Caller, service: Service
    ) -> dict[str, Any]:
        """An MCP client config for the agent (credential by reference, never the secret)."""
        return service.reporting.generate_config(
            caller,
            tenant,
            agent_id,
            path=body.path,
            credential_source=body.credential_source,
            credential_reference_value=body.credential_reference,
        )

    @app.get("/tenants/{tenant}/audit", tags=["audit"], responses=ERRORS)
    async def audit_log(
        tenant: str, caller: Caller, service: Service, agent_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The tenant's audit entries, oldest first, each with its hash and its predecessor's."""
        return await service.reporting.audit_log(caller, tenant, agent_id)
