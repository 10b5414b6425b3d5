"""The ASGI app: the protected ``/mcp`` endpoint in front of the SDK, metadata, health and the event receiver.

Every request to ``/mcp`` goes through, in order: Host/Origin checks (DNS rebinding), the bearer
token from the ``Authorization`` header (never the query string), verification in the configured
mode, on 2026-07-28 the routing headers held to the body, and for ``tools/call`` the tool's scope,
decided on the JSON-RPC body before the SDK sees it.
Only then does the SDK's session manager get the request, with the caller attached: it binds each
session to the principal that created it.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.routes import cors_middleware
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.agent.dpop import SCHEME
from sandbox.http_limits import MAX_BODY_BYTES, HeaderSizeLimit, TooLarge, read_body
from sandbox.jwt_signature import InvalidToken, KeyCache, VerificationUnavailable
from sandbox.mcp_server import challenges
from sandbox.mcp_server.binding import (
    PROOF_ALGORITHMS,
    BindingChecker,
    BindingRefused,
    Presented,
    certificate_thumbprint,
)
from sandbox.mcp_server.discovery import AuthorizationServers
from sandbox.mcp_server.events import EventReceiver, event_endpoint
from sandbox.mcp_server.introspection import IntrospectionVerifier
from sandbox.mcp_server.net import http_client
from sandbox.mcp_server.options import ServerOptions
from sandbox.mcp_server.principal import SCOPE_KEY, Principal, principal_in
from sandbox.mcp_server.revocation_journal import RevocationJournal
from sandbox.mcp_server.revocations import RevocationList
from sandbox.mcp_server.routing import Mismatch, routing_mismatch
from sandbox.mcp_server.scoping import MalformedRequest, ToolCall, ToolPolicy, read_tool_call
from sandbox.mcp_server.ssf_receiver import StreamReceiver, TransmitterConfiguration
from sandbox.mcp_server.tenant_data import TenantDirectory
from sandbox.mcp_server.throttle import DeniedCallLimiter
from sandbox.mcp_server.timing import Steps
from sandbox.mcp_server.tools import build_mcp
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.usage import UsageReporter
from sandbox.mcp_server.verification import JwtVerifier, Policy, RevocationCheckingVerifier, TokenVerifier
from sandbox.toolmap import ToolMap
from sandbox.zones import same_address

log = logging.getLogger("sandbox.mcp_server")

LOOPBACK = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
    allowed_origins=[
        *(f"{scheme}://{host}:*" for scheme in ("http", "https") for host in ("127.0.0.1", "localhost", "[::1]"))
    ],
)


class AmbiguousAuthorization(Exception):
    pass


def bearer_token(headers: Headers) -> str | None:
    """The credentials of the one ``Authorization: Bearer`` header; None without one (other schemes count as none)."""
    found = presented_token(headers)
    return found[1] if found is not None and found[0] == "Bearer" else None


def presented_token(headers: Headers) -> tuple[str, str] | None:
    """The scheme (``Bearer`` or ``DPoP``) and credentials of the one ``Authorization`` header; None without one."""
    values = headers.getlist("authorization")
    if len(values) > 1:
        raise AmbiguousAuthorization
    if not values:
        return None
    scheme, _, credentials = values[0].strip().partition(" ")
    for known in ("Bearer", SCHEME):
        if scheme.lower() == known.lower() and credentials.strip():
            return known, credentials.strip()
    return None


def client_certificate(scope: Scope) -> str | None:
    """``x5t#S256`` of the TLS client certificate of this connection (the ASGI TLS extension), if any."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    if not chain:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(chain[0]) if isinstance(chain[0], str) else bytes(chain[0])
    except ValueError:
        return None
    return certificate_thumbprint(der)


def request_url(request: Request) -> str:
    """The URL the client sent the request to (what a DPoP proof's ``htu`` names), without the query."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}{request.url.path}"


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the next app, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ProtectedMcpEndpoint:
    def __init__(
        self,
        options: ServerOptions,
        verifier: TokenVerifier,
        policy: ToolPolicy,
        sessions: StreamableHTTPSessionManager,
        usage: UsageReporter,
        anonymous: Principal | None = None,
        limiter: DeniedCallLimiter | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.options = options
        self.ready = ready  # jwt+events: false until the revocation stream is caught up
        self.limiter = limiter or DeniedCallLimiter(options.denied_call_limit, options.denied_call_window)
        self.anonymous = anonymous  # set only without auth (benchmarks): who every request is taken to be
        self.verifier = verifier
        self.policy = policy
        self.sessions = sessions
        self.usage = usage
        self.hosts = TransportSecurityMiddleware(LOOPBACK)
        self.binding = BindingChecker()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        steps = Steps()
        refusal = await self.hosts.validate_request(request)
        if refusal is not None:
            return await refusal(scope, receive, send)
        if self.ready is not None and not self.ready():
            waiting = challenges.unavailable("catching up on revocations after a start; retry shortly")
            return await waiting(scope, receive, send)
        body, call, malformed, mismatch = b"", None, None, None
        if request.method == "POST":
            try:
                body = await read_body(receive, request.headers, MAX_BODY_BYTES)
            except TooLarge:
                return await JSONResponse({"error": "request body too large"}, status_code=413)(scope, receive, send)
            try:
                call = read_tool_call(body)
            except MalformedRequest as exc:
                malformed = exc
            else:
                mismatch = routing_mismatch(request.headers, body)
        steps.end("read")
        answer, principal = await self._authenticate(request, call)
        steps.end("verify")
        if answer is None and principal is not None:
            scope[SCOPE_KEY] = principal  # for the tools, and for the access log
            answer = self._outside_zone(principal, request, call)
            answer = answer or self._authorize(principal, call, malformed, mismatch)
        if answer is not None:
            return await answer(scope, receive, send)
        steps.end("authorize")
        assert principal is not None
        await self._forward(scope, replaying(body, receive), send, principal, call, steps)

    async def _authenticate(self, request: Request, call: ToolCall | None) -> tuple[Response | None, Principal | None]:
        if self.anonymous is not None:
            return None, self.anonymous
        hint = self.policy.challenge_scope(call)
        metadata = self.options.resource_metadata_url
        try:
            found = presented_token(request.headers)
        except AmbiguousAuthorization:
            return challenges.invalid_request(resource_metadata=metadata, scope=hint), None
        if found is None:
            return challenges.unauthorized(resource_metadata=metadata, scope=hint), None
        scheme, token = found
        try:
            principal = await self.verifier.verify(token)
            presented = Presented(
                scheme=scheme,
                proofs=tuple(request.headers.getlist(SCHEME)),
                certificate_thumbprint=client_certificate(request.scope),
                method=request.method,
                url=request_url(request),
            )
            self.binding.check(principal, token, presented)
        except BindingRefused as exc:
            log.info("bound token refused", extra={"reason": exc.description, **principal.describe()})
            return (
                challenges.unbound(
                    scheme=exc.scheme,
                    error=exc.error,
                    description=exc.description,
                    resource_metadata=metadata,
                    algorithms=PROOF_ALGORITHMS,
                ),
                None,
            )
        except InvalidToken as exc:
            log.info("token refused", extra={"reason": exc.description, "path": request.url.path})
            return challenges.unauthorized(resource_metadata=metadata, scope=hint, description=exc.description), None
        except VerificationUnavailable as exc:
            log.warning("token could not be checked", extra={"reason": exc.description})
            return challenges.unavailable("the token cannot be checked right now; retry shortly"), None
        return None, principal

    def _outside_zone(self, principal: Principal, request: Request, call: ToolCall | None) -> Response | None:
        """403 for any request of a zone-limited agent from another source address (reported as a refusal)."""
        if principal.zone is None:
            return None
        source = request.client.host if request.client else None
        if same_address(principal.zone, source):
            return None
        self.usage.record(
            issuer=principal.issuer,
            client_id=principal.client_id,
            tool=call.tool if call is not None else "",
            allowed=False,
            status=403,
            source=source,
            outside_zone=True,
        )
        log.warning("call from outside the agent's zone refused", extra={**principal.describe(), "source": source})
        return challenges.outside_zone(zone=principal.zone, source=source)

    def _authorize(
        self,
        principal: Principal,
        call: ToolCall | None,
        malformed: MalformedRequest | None,
        mismatch: Mismatch | None = None,
    ) -> Response | None:
        if malformed is not None:
            return challenges.bad_request(malformed.message, code=malformed.code, request_id=malformed.request_id)
        if mismatch is not None:
            return challenges.bad_request(mismatch.message, code=mismatch.code, request_id=mismatch.request_id)
        if call is None or not self.policy.knows(call.tool):
            return None  # not a tool call, or a tool the SDK will report as unknown
        key = (principal.issuer, principal.client_id)
        retry_after = self.limiter.retry_after(key)
        if retry_after is not None:
            self.usage.record(
                issuer=principal.issuer, client_id=principal.client_id, tool=call.tool, allowed=False, status=429
            )
            log.warning("tool call throttled", extra={**principal.describe(), "tool": call.tool, "retry": retry_after})
            return challenges.too_many_refusals(retry_after)
        needed = self.policy.needed_for(call)
        if needed is None:
            environments = ", ".join(self.policy.toolmap.environments)
            return challenges.bad_request(
                f"{call.tool} needs an environment argument, one of: {environments}",
                code=-32602,
                request_id=call.request_id,
            )
        if not principal.may(needed):
            self.limiter.refused(key)
            self.usage.record(
                issuer=principal.issuer, client_id=principal.client_id, tool=call.tool, allowed=False, status=403
            )
            log.info("tool call refused", extra={**principal.describe(), "tool": call.tool, "needed": needed})
            return challenges.forbidden(
                resource_metadata=self.options.resource_metadata_url,
                scope=needed,
                description=f"{call.tool} needs scope {needed}",
            )
        return None

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal, call: ToolCall | None, steps: Steps
    ) -> None:
        user = AuthenticatedUser(principal.access_token())
        scope.update({"user": user, "auth": AuthCredentials(sorted(principal.scopes))})
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                steps.end("sdk")
                message = {**message, "headers": [*message.get("headers", []), steps.header()]}
            await send(message)

        context = auth_context_var.set(user)
        try:
            await self.sessions.handle_request(scope, receive, watch)
        finally:
            auth_context_var.reset(context)
            if call is not None and self.policy.knows(call.tool):
                self.usage.record(
                    issuer=principal.issuer,
                    client_id=principal.client_id,
                    tool=call.tool,
                    allowed=True,
                    status=status,
                )


class AccessLog:
    """One JSON line per request: method, path (never the query string), status, caller, time taken."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            principal = principal_in(scope)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.perf_counter() - began) * 1000, 1),
                    **(principal.describe() if principal else {}),
                },
            )


#: An issuer as a URL exactly as written: issuers compare as strings (RFC 8414 §3.3), so the metadata lists each
#: one as its tokens carry it in ``iss``, never re-rendered (a bare ``AnyHttpUrl`` would add a "/" to a root issuer).
ISSUER_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))


def metadata_handler(options: ServerOptions, trust: TrustedIssuers, policy: ToolPolicy) -> Any:
    async def handle(request: Request) -> Response:
        # A client reads the metadata to find its authorization server, and an SDK client refuses a server that does
        # not list its issuer: a tenant the broker made before this request is listed (a fetch begun since).
        await trust.catch_up()
        servers = trust.known()
        if not servers:
            return challenges.unavailable("no authorization server is known yet")
        document = ProtectedResourceMetadata(
            resource=AnyHttpUrl(options.canonical_url),
            authorization_servers=[ISSUER_URL.validate_python(server) for server in servers],
            scopes_supported=list(dict.fromkeys([*options.base_scopes, *policy.all_scopes()])),
            bearer_methods_supported=["header"],
            resource_signing_alg_values_supported=None,
            # DPoP-bound tokens are honoured (their proof checked); bearer tokens stay accepted, so not required.
            dpop_signing_alg_values_supported=list(PROOF_ALGORITHMS),
            dpop_bound_access_tokens_required=False,
            # Certificate-bound tokens (RFC 8705) are honoured on the TLS listener, when this server has one.
            tls_client_certificate_bound_access_tokens=True if options.tls_port is not None else None,
            resource_name="mcp-agent-sandbox reference MCP server",
        )
        return await ProtectedResourceMetadataHandler(document).handle(request)

    return handle


def _anonymous(options: ServerOptions, policy: ToolPolicy) -> Principal | None:
    """Without auth (benchmarks only): one caller with every scope, in the first trusted issuer's tenant."""
    if not options.no_auth:
        return None
    log.warning("serving WITHOUT authentication: for benchmarks only", extra={"resource": options.canonical_url})
    return Principal(
        issuer=options.issuers[0],
        client_id="anonymous",
        subject="anonymous",
        scopes=frozenset([*options.base_scopes, *policy.all_scopes()]),
        issued_at=0,
        expires_at=2**31 - 1,
        token_fingerprint="none",
        tenant=options.tenant_names.get(options.issuers[0], ""),
    )


def build_app(options: ServerOptions) -> Starlette:
    client = http_client()
    policy = ToolPolicy(ToolMap.load(options.tools_file), options.base_scopes)
    trust = TrustedIssuers(
        options.issuers,
        client,
        names=options.tenant_names,
        trust_list_url=f"{options.broker_url}/trust/issuers" if options.broker_url else None,
        refetch_interval=options.trust_refetch_interval,
    )
    servers = AuthorizationServers(client)
    rules = Policy(options.canonical_url, options.algorithms, options.leeway, options.max_token_lifetime)
    key_caches: dict[str, KeyCache] = {}

    def keys_of(issuer: str) -> KeyCache:
        if issuer not in key_caches:

            async def jwks_uri() -> str:
                return await servers.endpoint(issuer, "jwks_uri")

            key_caches[issuer] = KeyCache(
                client, jwks_uri, refetch_interval=options.jwks_refetch_interval, max_age=options.jwks_max_age
            )
        return key_caches[issuer]

    verifier: TokenVerifier
    routes = []
    if options.mode == "introspect":
        assert options.introspection_secret is not None
        verifier = IntrospectionVerifier(
            rules,
            trust,
            servers,
            client,
            client_id=options.canonical_url,
            client_secret=options.introspection_secret,
            cache_ttl=options.introspection_cache_ttl,
            endpoints=options.introspection_endpoints,
        )
    else:
        verifier = JwtVerifier(rules, trust, keys_of)
    stream: StreamReceiver | None = None
    if options.mode == "jwt+events":
        assert options.transmitter_url is not None and options.revocation_journal is not None
        revocations = RevocationList(
            max_token_lifetime=options.max_token_lifetime,
            leeway=options.leeway,
            journal=RevocationJournal(options.revocation_journal),
        )
        verifier = RevocationCheckingVerifier(verifier, revocations.covers)
        transmitter = TransmitterConfiguration(
            client, options.transmitter_url, jwks_override=options.events_signer_jwks_url
        )
        receiver = EventReceiver(
            KeyCache(client, transmitter.jwks_uri, refetch_interval=options.jwks_refetch_interval),
            revocations,
            issuer=options.transmitter_url,
            audience=options.canonical_url,
            leeway=options.leeway,
        )
        stream = StreamReceiver(
            client,
            receiver,
            transmitter,
            audience=options.canonical_url,
            events_url=urlsplit(options.canonical_url)._replace(path="/events", query="", fragment="").geturl(),
            secret=options.usage_secret or "",
        )
        routes.append(Route("/events", event_endpoint(receiver), methods=["POST"]))

    mcp = build_mcp(policy, TenantDirectory(policy.toolmap.environments), options.request_state_ttl)
    mcp.streamable_http_app(json_response=True, transport_security=LOOPBACK, max_request_body_size=MAX_BODY_BYTES)
    sessions = mcp.session_manager
    usage = UsageReporter(
        client,
        f"{options.broker_url}/usage" if options.broker_url else None,
        options.usage_secret,
        resource=options.canonical_url,
        flush_interval=options.usage_flush_interval,
    )
    ready = stream.caught_up.is_set if stream is not None else None
    endpoint = ProtectedMcpEndpoint(
        options, verifier, policy, sessions, usage, _anonymous(options, policy), ready=ready
    )
    metadata_path = urlsplit(options.resource_metadata_url).path
    metadata = cors_middleware(metadata_handler(options, trust, policy), ["GET", "OPTIONS"])

    async def health(request: Request) -> Response:
        auth = {"auth": "none"} if options.no_auth else {}
        body = {"status": "ok", "mode": options.mode, "resource": options.canonical_url, **auth}
        if ready is not None and not ready():
            body["status"] = "catching up on revocations"  # not ready: the stack waits, callers get 503
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse(body)

    routes += [
        Route(urlsplit(options.canonical_url).path or "/", endpoint, methods=["GET", "POST", "DELETE"]),
        Route(metadata_path, metadata, methods=["GET", "OPTIONS"]),
        Route("/.well-known/oauth-protected-resource", metadata, methods=["GET", "OPTIONS"]),
        Route("/health", health, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sessions.run():
            await trust.refresh()
            usage.start()
            if stream is not None:
                await stream.start()
            log.info("MCP server ready", extra={"resource": options.canonical_url, "mode": options.mode})
            try:
                yield
            finally:
                if stream is not None:
                    await stream.stop()
                await usage.stop()
                await client.aclose()

    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(AccessLog), Middleware(HeaderSizeLimit)])
    app.state.usage = usage
    return app
