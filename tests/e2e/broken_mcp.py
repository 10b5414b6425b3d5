"""Deliberately broken MCP servers for certify's tests: the reference server's ASGI app with one piece substituted
(a pytest monkeypatch for the test's duration, or a wrapper around the app), each flag one defect a real server
has been seen to have. Nothing here is product code: the reference server has no defect flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.certify.forge import claims_of, unverified
from sandbox.mcp_server import verification
from sandbox.mcp_server.app import ProtectedMcpEndpoint, bearer_token
from sandbox.mcp_server.challenges import bad_request
from sandbox.mcp_server.principal import Principal, principal_from_claims
from sandbox.mcp_server.revocations import RevocationList
from sandbox.mcp_server.scoping import ToolScopeMiddleware
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.verification import JwtVerifier

Wrapper = Callable[[ASGIApp], ASGIApp]


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
    def authorize_nothing(self: ProtectedMcpEndpoint, principal: Any, call: Any, malformed: Any) -> Any:
        return bad_request(malformed.message, code=malformed.code) if malformed is not None else None

    monkeypatch.setattr(ProtectedMcpEndpoint, "_authorize", authorize_nothing)
    monkeypatch.setattr(ToolScopeMiddleware, "_check_call", lambda self, principal, params: None)


def session_not_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    def everyone(self: Principal) -> AccessToken:
        return AccessToken(token="shared", client_id="anyone", scopes=[], subject="anyone", claims={"iss": "anyone"})

    monkeypatch.setattr(Principal, "access_token", everyone)


def revocation_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RevocationList, "covers", lambda self, principal: False)


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

    def wrap(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if _unparseable_token(scope):
                return await response(scope, receive, send)
            await app(scope, receive, send)

        return wrapped

    return wrap


def without_www_authenticate(app: ASGIApp) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def stripped(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"www-authenticate"]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, stripped)

    return wrapped


#: Each broken server by name: its defect, and the one check that must catch it.
DEFECTS: dict[str, tuple[Defect, str]] = {
    "no audience check": (Defect(no_audience_check), "401-audience"),
    "expired accepted": (Defect(expired_accepted), "401-expired"),
    "any issuer accepted": (Defect(any_issuer), "401-issuer"),
    "no signature check": (Defect(no_signature_check), "401-signature"),
    "alg none accepted": (Defect(alg_none_accepted), "401-signature"),
    "400 instead of 401": (
        Defect(wrap=answering_garbage_with(JSONResponse({"error": "invalid_request"}, 400))),
        "401-invalid",
    ),
    "no WWW-Authenticate": (Defect(wrap=without_www_authenticate), "401-www-authenticate"),
    "tools not scoped": (Defect(tools_not_scoped), "tool-scope"),
    "session not bound": (Defect(session_not_bound), "session-binding"),
    "revocation ignored": (Defect(revocation_ignored), "revocation"),
    "500 on garbage": (Defect(wrap=answering_garbage_with(Response("Internal Server Error", 500))), "401-invalid"),
}
