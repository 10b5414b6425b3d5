"""Deliberately broken MCP servers for certify's tests: the reference server's ASGI app with one piece substituted
(a pytest monkeypatch for the test's duration, or a wrapper around the app), each flag one defect a real server
has been seen to have, each on the MCP revision whose check catches it. Nothing here is product code: the
reference server has no defect flags."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from mcp.server.auth.provider import AccessToken
from mcp.server.caching import CacheHint
from mcp.server.request_state import RequestStateSecurity
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.certify.forge import claims_of, unverified
from sandbox.certify.revision import LEGACY, STATELESS, Revision
from sandbox.http_limits import MAX_BODY_BYTES, read_body
from sandbox.jwt_signature import InvalidToken, Key, KeyCache
from sandbox.mcp_server import binding, tools, verification
from sandbox.mcp_server.app import ProtectedMcpEndpoint, bearer_token, replaying
from sandbox.mcp_server.challenges import bad_request
from sandbox.mcp_server.options import ServerOptions
from sandbox.mcp_server.principal import Principal, principal_from_claims
from sandbox.mcp_server.revocations import RevocationList
from sandbox.mcp_server.scoping import ToolScopeMiddleware
from sandbox.mcp_server.tenant_data import TenantDirectory
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.verification import JwtVerifier, RevocationCheckingVerifier

#: Wraps the server's app; gets the server's options (its canonical URL, its broker/upstream URL).
Wrapper = Callable[[ASGIApp, ServerOptions], ASGIApp]


@dataclass(frozen=True)
class Defect:
    patch: Callable[[pytest.MonkeyPatch], None] = lambda monkeypatch: None
    wrap: Wrapper | None = None


def no_audience_check(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = verification.check_claims

    def lenient(claims: dict[str, Any], issuer: str, policy: verification.Policy) -> None:
        checked({**claims, "aud": policy.audience}, issuer, policy)

    monkeypatch.setattr(verification, "check_claims", lenient)


def expired_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = verification.check_claims

    def timeless(claims: dict[str, Any], issuer: str, policy: verification.Policy) -> None:
        now = int(policy.clock())
        current = {**claims, "exp": max(int(claims.get("exp", now)), now + 60)}
        if "nbf" in current:
            current["nbf"] = min(int(current["nbf"]), now)
        checked(current, issuer, policy)

    monkeypatch.setattr(verification, "check_claims", timeless)


def any_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    async def trusting(self: TrustedIssuers, issuer: str) -> bool:
        return True

    monkeypatch.setattr(TrustedIssuers, "is_trusted", trusting)


class _Unverified:
    """Stands in for joserfc's jwt module in the verifier: decodes, never verifies."""

    @staticmethod
    def decode(token: str, key: Any, algorithms: Any = None) -> Any:
        return type("Token", (), {"claims": claims_of(token)})()


def no_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "jwt", _Unverified)


def alg_none_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    verify = JwtVerifier.verify

    async def trusting_none(self: JwtVerifier, token: str) -> Principal:
        parts = unverified(token)
        if parts is not None and str(parts[0].get("alg", "")).lower() == "none":
            claims = parts[1]
            verification.check_claims(claims, str(claims.get("iss")), self.policy)
            return principal_from_claims(claims, token)
        return await verify(self, token)

    monkeypatch.setattr(JwtVerifier, "verify", trusting_none)


def tools_not_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    def authorize_nothing(
        self: ProtectedMcpEndpoint, principal: Any, call: Any, malformed: Any, mismatch: Any = None
    ) -> Any:
        return bad_request(malformed.message, code=malformed.code) if malformed is not None else None

    monkeypatch.setattr(ProtectedMcpEndpoint, "_authorize", authorize_nothing)
    monkeypatch.setattr(ToolScopeMiddleware, "_check_call", lambda self, principal, params: None)


def session_not_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    def everyone(self: Principal) -> AccessToken:
        return AccessToken(token="shared", client_id="anyone", scopes=[], subject="anyone", claims={"iss": "anyone"})

    monkeypatch.setattr(Principal, "access_token", everyone)


def sessions_bound_to_the_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binds a session to the issuer (the tenant) that opened it, not to the client: any agent of that tenant may
    take it over, while another tenant's agents are refused."""

    def tenant_wide(self: Principal) -> AccessToken:
        return AccessToken(
            token=self.issuer, client_id=self.issuer, scopes=sorted(self.scopes), claims={"iss": self.issuer}
        )

    monkeypatch.setattr(Principal, "access_token", tenant_wide)


def request_state_not_bound_to_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seals its requestState (integrity, lifetime, the request it answers) but not for the principal it asked:
    another agent presenting it is served."""

    class Unbound(RequestStateSecurity):
        @classmethod
        def ephemeral(cls, *, ttl: float = 600.0, audience: str | None = None) -> RequestStateSecurity:
            return cls(keys=[secrets.token_bytes(32)], ttl=ttl, audience=audience, bind_principal=None)

    monkeypatch.setattr(tools, "RequestStateSecurity", Unbound)


def revocation_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RevocationList, "covers", lambda self, principal: False)


def revocation_ignored_on_open_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses a revoked agent's new sessions, but goes on serving the sessions it opened before."""
    authenticate = ProtectedMcpEndpoint._authenticate

    async def lenient(self: ProtectedMcpEndpoint, request: Request, call: Any) -> Any:
        verifier = self.verifier
        if request.headers.get("mcp-session-id") and isinstance(verifier, RevocationCheckingVerifier):
            self.verifier = verifier._inner  # certify's requests come one at a time
            try:
                return await authenticate(self, request, call)
            finally:
                self.verifier = verifier
        return await authenticate(self, request, call)

    monkeypatch.setattr(ProtectedMcpEndpoint, "_authenticate", lenient)


def keys_never_refetched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fetches its issuers' keys once, at the first token, and never again: a newly published key is unknown."""

    async def frozen(self: KeyCache, kid: str | None, alg: str) -> Key:
        if self._keys is None:
            await self._refresh(self._fetched_at)
        found = self._find(kid, alg)
        if found is None:
            raise InvalidToken("the token was signed with a key the issuer does not publish")
        return found

    monkeypatch.setattr(KeyCache, "key", frozen)


def tools_list_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Marks its per-caller tools/list cacheScope "public"."""
    monkeypatch.setattr(tools, "CACHE_HINTS", {"tools/list": CacheHint(ttl_ms=0, scope="public")})


def state_handle_accepted(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """Hands out a handle (as Mcp-Session-Id) on every served request and takes it for the token it came with."""
    handles: dict[str, bytes] = {}

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mcp":
            return await app(scope, receive, send)
        headers = dict(scope["headers"])
        presented = headers.get(b"mcp-session-id", b"").decode()
        if b"authorization" not in headers and presented in handles:
            scope = {**scope, "headers": [*scope["headers"], (b"authorization", handles[presented])]}
        authorization = dict(scope["headers"]).get(b"authorization")

        async def handing_out(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200 and authorization:
                handle = secrets.token_hex(8)
                handles[handle] = authorization
                message = {**message, "headers": [*message.get("headers", []), (b"mcp-session-id", handle.encode())]}
            await send(message)

        await app(scope, receive, handing_out)

    return wrapped


def routing_headers_ignored(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """Never compares Mcp-Method / Mcp-Name with the body: it takes the body's values for them."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mcp" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body = await read_body(receive, Headers(scope=scope), MAX_BODY_BYTES)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"mcp-method", b"mcp-name")]
        if isinstance(parsed, dict) and isinstance(parsed.get("method"), str):
            headers.append((b"mcp-method", parsed["method"].encode()))
            name = (parsed.get("params") or {}).get("name")
            if isinstance(name, str):
                headers.append((b"mcp-name", name.encode()))
        await app({**scope, "headers": headers}, replaying(body, receive), send)

    return wrapped


def _caller_scopes(scope: Scope) -> set[str]:
    token = bearer_token(Headers(scope=scope))
    claims = claims_of(token) if token is not None and unverified(token) is not None else {}
    return set(str(claims.get("scope", "")).split())


def scopes_challenged_one_at_a_time(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """deploy.trigger's 403 first asks for deploy.read (which the call does not even need), and only once that
    is held for the write scope: two challenges for one operation."""
    first = b"mcp:tool:deploy.read"

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mcp":
            return await app(scope, receive, send)
        lacking = first.decode() not in _caller_scopes(scope)
        seen = bytearray()

        async def peeking() -> Message:
            message = await receive()
            seen.extend(message.get("body", b""))
            return message

        def challenge(value: bytes) -> bytes:
            return re.sub(rb'scope="[^"]*"', b'scope="' + first + b'"', value)

        async def relabelled(message: Message) -> None:
            start = message["type"] == "http.response.start" and message["status"] == 403
            if start and lacking and b'"deploy.trigger"' in bytes(seen):
                headers = message.get("headers", [])
                message = {
                    **message,
                    "headers": [(k, challenge(v) if k.lower() == b"www-authenticate" else v) for k, v in headers],
                }
            await send(message)

        await app(scope, peeking, relabelled)

    return wrapped


def offline_access_advertised(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """Lists offline_access in its metadata's scopes_supported."""
    return _metadata_rewritten(app, lambda document: {**document, "scopes_supported": [
        *document.get("scopes_supported", []), "offline_access"
    ]})  # fmt: skip


def _unparseable_token(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["path"] != "/mcp":
        return False
    try:
        token = bearer_token(Headers(scope=scope))
    except Exception:
        return False
    return token is not None and unverified(token) is None


def answering_garbage_with(response: Response) -> Wrapper:
    """A server whose token parser's error escapes as another status than 401."""

    def wrap(app: ASGIApp, options: ServerOptions) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if _unparseable_token(scope):
                return await response(scope, receive, send)
            await app(scope, receive, send)

        return wrapped

    return wrap


def without_www_authenticate(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def stripped(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"www-authenticate"]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, stripped)

    return wrapped


def no_scope_hint(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """Challenges without ``scope`` on a 401."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def hintless(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                headers = [
                    (k, re.sub(rb'scope="[^"]*", ', b"", v) if k.lower() == b"www-authenticate" else v)
                    for k, v in message.get("headers", [])
                ]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, hintless)

    return wrapped


def scope_refusals_as_401(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def relabelled(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 403:
                message = {**message, "status": 401}
            await send(message)

        await app(scope, receive, relabelled)

    return wrapped


def query_token_accepted(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """Takes ``access_token`` from the query string when there is no Authorization header."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(k.lower() == b"authorization" for k, _ in scope["headers"]):
            token = dict(parse_qsl(scope.get("query_string", b"").decode())).get("access_token")
            if token:
                scope = {**scope, "headers": [*scope["headers"], (b"authorization", f"Bearer {token}".encode())]}
        await app(scope, receive, send)

    return wrapped


def token_forwarded_upstream(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """Calls its upstream (the broker's trust list) with the caller's own token."""
    upstream = f"{options.broker_url}/trust/issuers"
    sessions: set[str] = set()

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else Headers()
        session = headers.get("mcp-session-id")
        if scope["type"] == "http" and scope["path"] == "/mcp" and session and session not in sessions:
            sessions.add(session)  # once per session: enough to be seen, cheap enough for every run
            token = bearer_token(headers)
            if token is not None:
                async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
                    await client.get(upstream, headers={"Authorization": f"Bearer {token}"})
        await app(scope, receive, send)

    return wrapped


def _metadata_rewritten(app: ASGIApp, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> ASGIApp:
    """The app with each protected resource metadata document it serves passed through ``rewrite``."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/.well-known/oauth-protected-resource"):
            return await app(scope, receive, send)
        started: Message = {}
        body = bytearray()

        async def rewritten(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = message
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            document = json.loads(body) if started.get("status") == 200 else None
            content = json.dumps(rewrite(document)).encode() if isinstance(document, dict) else bytes(body)
            headers = [(k, v) for k, v in started.get("headers", []) if k.lower() != b"content-length"]
            await send({**started, "headers": [*headers, (b"content-length", str(len(content)).encode())]})
            await send({"type": "http.response.body", "body": content})

        await app(scope, receive, rewritten)

    return wrapped


def metadata_naming_another_resource(app: ASGIApp, options: ServerOptions) -> ASGIApp:
    """Serves protected resource metadata whose ``resource`` is not the server's canonical URL."""
    return _metadata_rewritten(app, lambda document: {**document, "resource": f"{options.canonical_url}/other"})


def tenant_data_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    lookup = TenantDirectory.__getitem__
    monkeypatch.setattr(TenantDirectory, "__getitem__", lambda self, tenant: lookup(self, "shared"))


def dpop_proof_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes a DPoP-bound token as a bearer token: the token's signature, audience and times are checked, the
    proof of possession not at all (so a stolen token works for anyone)."""
    checked = binding.BindingChecker.check

    def lenient(self: binding.BindingChecker, principal: Principal, token: str, presented: binding.Presented) -> None:
        if principal.binding is not None and principal.binding.jkt is not None:
            return
        checked(self, principal, token, presented)

    monkeypatch.setattr(binding.BindingChecker, "check", lenient)


#: Each broken server by name: its defect, the one check that must catch it, and the revision it is run on.
DEFECTS: dict[str, tuple[Defect, str, Revision]] = {
    "no audience check": (Defect(no_audience_check), "401-audience", LEGACY),
    "expired accepted": (Defect(expired_accepted), "401-expired", LEGACY),
    "any issuer accepted": (Defect(any_issuer), "401-issuer", LEGACY),
    "no signature check": (Defect(no_signature_check), "401-signature", LEGACY),
    "alg none accepted": (Defect(alg_none_accepted), "401-signature", LEGACY),
    "400 instead of 401": (
        Defect(wrap=answering_garbage_with(JSONResponse({"error": "invalid_request"}, 400))),
        "401-invalid",
        LEGACY,
    ),
    "no WWW-Authenticate": (Defect(wrap=without_www_authenticate), "401-www-authenticate", LEGACY),
    "tools not scoped": (Defect(tools_not_scoped), "tool-scope", LEGACY),
    "session not bound": (Defect(session_not_bound), "session-binding", LEGACY),
    "sessions bound to the tenant only": (Defect(sessions_bound_to_the_tenant), "session-binding", LEGACY),
    "revocation ignored": (Defect(revocation_ignored), "revocation", LEGACY),
    "500 on garbage": (
        Defect(wrap=answering_garbage_with(Response("Internal Server Error", 500))),
        "401-invalid",
        LEGACY,
    ),
    # Beyond the list: a defect for each check the list leaves out, so each of them is seen failing too.
    "metadata names another resource": (Defect(wrap=metadata_naming_another_resource), "prm-content", LEGACY),
    "no scope hint": (Defect(wrap=no_scope_hint), "401-scope-hint", LEGACY),
    "scope refusals answered 401": (Defect(wrap=scope_refusals_as_401), "403-scope", LEGACY),
    "query token accepted": (Defect(wrap=query_token_accepted), "no-query-token", LEGACY),
    "token forwarded upstream": (Defect(wrap=token_forwarded_upstream), "no-passthrough", LEGACY),
    "tenant data shared": (Defect(tenant_data_shared), "tenant", LEGACY),
    # The fixes of both revisions' checks, and the checks 2026-07-28 adds.
    "revocation ignored on open sessions": (Defect(revocation_ignored_on_open_sessions), "revocation", LEGACY),
    "keys never refetched": (Defect(keys_never_refetched), "jwks-rollover", STATELESS),
    "state handle accepted": (Defect(wrap=state_handle_accepted), "stateless-auth", STATELESS),
    "routing headers ignored": (Defect(wrap=routing_headers_ignored), "header-body-match", STATELESS),
    "tools/list cached public": (Defect(tools_list_public), "private-cache", STATELESS),
    "scopes challenged one at a time": (Defect(wrap=scopes_challenged_one_at_a_time), "single-challenge", STATELESS),
    "offline_access advertised": (Defect(wrap=offline_access_advertised), "no-offline-access", STATELESS),
    "requestState not bound to the caller": (
        Defect(request_state_not_bound_to_the_caller),
        "request-state",
        STATELESS,
    ),
    # Sender-constrained tokens (examined because the reference server's metadata declares DPoP).
    "DPoP proof not checked": (Defect(dpop_proof_unchecked), "sender-constrained", LEGACY),
}
