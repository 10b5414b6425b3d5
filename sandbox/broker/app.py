"""The broker's HTTP API (FastAPI; the OpenAPI document is served at ``/openapi.json``).

Run it with ``mcp-sandbox broker serve``; the stack starts it as the ``broker`` component. The routes are in
:mod:`sandbox.broker.routes`, one router per concern; this module builds the service and assembles the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sandbox.broker import validation
from sandbox.broker.auth import Authenticator, AuthError
from sandbox.broker.base import BrokerContext
from sandbox.broker.clock import Clock, SystemClock
from sandbox.broker.errors import BrokerError, MfaRequired
from sandbox.broker.events import SigningKey
from sandbox.broker.policy import Policy
from sandbox.broker.routes import ROUTERS
from sandbox.broker.service import BrokerService
from sandbox.broker.ssf_api import router as ssf_router
from sandbox.broker.store import Database, default_database_url
from sandbox.broker.validation import invalid_request_body
from sandbox.config import Settings, load_settings
from sandbox.errors import SandboxError
from sandbox.http_limits import BodySizeLimit, HeaderSizeLimit
from sandbox.idp import tenant_identity_providers
from sandbox.idp.provider import IdentityProvider, IdpUnavailable
from sandbox.idp.realm import operator_client_id
from sandbox.loopback import IDEMPOTENT, KEEPALIVE, Redial
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
        BrokerContext(
            settings=settings,
            db=db,
            adapter=adapter or tenant_identity_providers(settings),
            policy=Policy.load(settings.policy_file, tools),
            tools=tools,
            clock=clock or SystemClock(),
            signing_key=SigningKey.load_or_create(settings.signing_key_file),
            http=http,
        )
    )


async def _adopt_sandbox_tenants(service: BrokerService) -> None:
    for tenant in service.context.settings.tenants:
        try:
            if await service.tenants.adopt_tenant(tenant):
                log.info("adopted sandbox tenant", extra={"tenant": tenant})
        except IdpUnavailable as exc:
            log.warning("IdP unreachable at start-up", extra={"tenant": tenant, "reason": exc.cause})
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
        # Events go to the stack's MCP servers (uvicorn), whose idle connections close after 5 s. A POST whose
        # connection dropped unanswered is sent again: this client posts SETs, which receivers deduplicate by jti,
        # and the revocation check's initialize with a dead token, which changes nothing.
        transport = Redial(httpx.AsyncHTTPTransport(limits=KEEPALIVE), methods=IDEMPOTENT | {"POST"})
        async with httpx.AsyncClient(timeout=10.0, transport=transport) as http:
            service = build_service(settings, http, adapter=adapter, clock=clock)
            for server in settings.mcp_servers:  # the stack's reference servers, one per revocation mode
                service.tenants.register_resource_server(None, server.url, server.events_url)
            await _adopt_sandbox_tenants(service)
            app.state.service = service
            app.state.transmitter = service.context.transmitter
            app.state.usage_secret = Secrets(settings).get_or_create(USAGE_INGEST_SECRET)
            app.state.authenticator = Authenticator(
                master_issuer=settings.issuer("master"),
                operator_client_id=operator_client_id(settings),
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
    for router in ROUTERS:  # one per concern (sandbox.broker.routes)
        app.include_router(router)
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
