"""The revocation event receiver of ``jwt+events`` mode: signed SETs (RFC 8417) pushed over HTTP (RFC 8935).

``POST /events`` with ``Content-Type: application/secevent+jwt``; the body is a SET signed by the
broker's key (its JWKS URL is configured), addressed to this server's canonical URL, carrying an
``urn:mcp-sandbox:event:agent-revoked`` event. 202 when taken; 400 with ``{"err", "description"}``
(RFC 8935 §2.3) otherwise, and the revocation list is left unchanged.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.mcp_server.errors import InvalidToken, VerificationUnavailable
from sandbox.mcp_server.jwks import KeyCache
from sandbox.mcp_server.principal import same_resource
from sandbox.mcp_server.revocations import Revocation, RevocationList
from sandbox.mcp_server.verification import peek

log = logging.getLogger(__name__)

AGENT_REVOKED = "urn:mcp-sandbox:event:agent-revoked"
CONTENT_TYPE = "application/secevent+jwt"
SET_ALGORITHMS = ("ES256", "RS256")
MAX_SET_BYTES = 64 * 1024
REMEMBERED_IDS = 10_000


class RejectedEvent(Exception):
    def __init__(self, err: str, description: str) -> None:
        self.err = err
        self.description = description
        super().__init__(f"{err}: {description}")


class EventReceiver:
    def __init__(
        self,
        keys: KeyCache,
        revocations: RevocationList,
        *,
        issuer: str,
        audience: str,
        leeway: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._revocations = revocations
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def receive(self, value: str) -> Revocation | None:
        """Verify one SET and apply it; None if it was already applied (same ``jti``)."""
        claims = await self._verified_claims(value)
        revocation = revocation_in(claims)
        if claims["jti"] in self._seen:
            return None
        self._seen[claims["jti"]] = None
        while len(self._seen) > REMEMBERED_IDS:
            self._seen.popitem(last=False)
        self._revocations.add(revocation)
        return revocation

    async def _verified_claims(self, value: str) -> dict[str, Any]:
        try:
            header, _ = peek(value)
        except InvalidToken as exc:
            raise RejectedEvent("invalid_request", "the body is not a compact JWS") from exc
        alg = header.get("alg")
        if alg not in SET_ALGORITHMS:
            raise RejectedEvent("invalid_request", f"signature algorithm {alg!r} is not accepted for events")
        if str(header.get("typ", "")).lower() not in ("secevent+jwt", CONTENT_TYPE):
            raise RejectedEvent("invalid_request", "the JWT is not typed secevent+jwt")
        if "crit" in header or "b64" in header:
            raise RejectedEvent("invalid_request", "the JWS header asks for processing this receiver does not do")
        try:
            key = await self._keys.key(header.get("kid"), alg)
            claims = jwt.decode(value, key, algorithms=[alg]).claims
        except InvalidToken as exc:
            raise RejectedEvent(
                "invalid_key", "the SET was signed with a key the transmitter does not publish"
            ) from exc
        except VerificationUnavailable as exc:
            raise RejectedEvent("invalid_key", f"the transmitter's keys cannot be fetched: {exc.description}") from exc
        except (JoseError, ValueError, TypeError) as exc:
            raise RejectedEvent("authentication_failed", "the SET's signature does not verify") from exc
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            events={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise RejectedEvent("invalid_request", f"the SET's claims are not acceptable ({exc.description})") from exc
        if claims["iss"] != self._issuer:
            raise RejectedEvent("invalid_issuer", "the SET comes from another transmitter")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not any(
            isinstance(a, str) and same_resource(a, self._audience) for a in audiences
        ):
            raise RejectedEvent("invalid_audience", "the SET is addressed to another receiver")
        return claims


def revocation_in(claims: dict[str, Any]) -> Revocation:
    events = claims.get("events")
    event = events.get(AGENT_REVOKED) if isinstance(events, dict) else None
    if not isinstance(event, dict):
        raise RejectedEvent("invalid_request", f"the SET carries no {AGENT_REVOKED} event")
    subject = event.get("subject")
    client_id = event.get("client_id")
    revoked_at = event.get("revoked_at")
    if (
        not isinstance(subject, dict)
        or subject.get("format") != "iss_sub"
        or not isinstance(subject.get("iss"), str)
        or not isinstance(subject.get("sub"), str)
        or not isinstance(client_id, str)
        or not client_id
        or isinstance(revoked_at, bool)
        or not isinstance(revoked_at, int | float)
    ):
        raise RejectedEvent("invalid_request", "the agent-revoked event needs subject (iss_sub), client_id, revoked_at")
    return Revocation(subject["iss"], client_id, subject["sub"], int(revoked_at))


def event_endpoint(receiver: EventReceiver) -> Callable[[Request], Any]:
    async def receive(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != CONTENT_TYPE:
            return rejection(RejectedEvent("invalid_request", f"Content-Type must be {CONTENT_TYPE}"))
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SET_BYTES:
                return rejection(RejectedEvent("invalid_request", "the SET is too large"), status=413)
        try:
            revocation = await receiver.receive(body.decode("ascii").strip())
        except UnicodeDecodeError:
            return rejection(RejectedEvent("invalid_request", "the body is not a compact JWS"))
        except RejectedEvent as rejected:
            log.warning("revocation event refused", extra={"err": rejected.err, "description": rejected.description})
            return rejection(rejected)
        if revocation is not None:
            log.info(
                "agent revoked",
                extra={"issuer": revocation.issuer, "client_id": revocation.client_id, "at": revocation.revoked_at},
            )
        return Response(status_code=202)

    return receive


def rejection(rejected: RejectedEvent, status: int = 400) -> JSONResponse:
    return JSONResponse({"err": rejected.err, "description": rejected.description}, status_code=status)
