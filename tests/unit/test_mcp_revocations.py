"""Revocation events (signed SETs) and the revocation list: what is refused, and for how long."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from mcp_fakes import AUDIENCE, ISSUER, Clock

from sandbox.mcp_server.events import AGENT_REVOKED, EventReceiver, RejectedEvent
from sandbox.mcp_server.jwks import KeyCache
from sandbox.mcp_server.principal import Principal
from sandbox.mcp_server.revocations import Revocation, RevocationList

BROKER = "http://127.0.0.1:3"


def agent(client_id: str = "agent-1", issued_at: int = 1000, subject: str = "sa-1") -> Principal:
    return Principal(ISSUER, client_id, subject, frozenset(), issued_at, issued_at + 300, "sha256:0")


def test_a_revocation_covers_the_agents_tokens_issued_at_or_before_it() -> None:
    revocations = RevocationList(max_token_lifetime=300, leeway=5, clock=Clock(1000))
    revocations.add(Revocation(ISSUER, "agent-1", "sa-1", 1000))
    assert revocations.covers(agent(issued_at=999)) and revocations.covers(agent(issued_at=1000))
    assert not revocations.covers(agent(issued_at=1001))
    assert not revocations.covers(agent("agent-2", subject="sa-2"))
    assert revocations.covers(agent("renamed", subject="sa-1"))  # same service account, other client id
    other_tenant = Principal("http://127.0.0.1:1/realms/globex", "agent-1", "sa-1", frozenset(), 900, 1200, "x")
    assert not revocations.covers(other_tenant)


def test_a_later_revocation_moves_the_line_and_an_earlier_one_never_undoes_it() -> None:
    revocations = RevocationList(max_token_lifetime=300, leeway=5, clock=Clock(1000))
    revocations.add(Revocation(ISSUER, "agent-1", None, 1000))
    revocations.add(Revocation(ISSUER, "agent-1", None, 900))
    assert revocations.covers(agent(issued_at=950))
    revocations.add(Revocation(ISSUER, "agent-1", None, 1100))
    assert revocations.covers(agent(issued_at=1050))


def test_entries_are_forgotten_once_no_covered_token_can_still_be_valid() -> None:
    clock = Clock(1000)
    revocations = RevocationList(max_token_lifetime=300, leeway=5, clock=clock)
    revocations.add(Revocation(ISSUER, "agent-1", "sa-1", 1000))
    clock.now = 1000 + 305
    assert len(revocations) == 2 and revocations.covers(agent(issued_at=1000))
    clock.now = 1000 + 306
    assert len(revocations) == 0


class Transmitter:
    """The broker's side: a signing key published as a JWK Set, and SETs signed with it."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "broker-1"})

    def client(self) -> httpx.AsyncClient:
        jwks = {"keys": [self.key.as_dict(private=False)]}
        return httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=jwks)))

    def event(self, **changes: Any) -> dict[str, Any]:
        claims = {
            "iss": BROKER,
            "aud": AUDIENCE,
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
            "events": {
                AGENT_REVOKED: {
                    "subject": {"format": "iss_sub", "iss": ISSUER, "sub": "sa-1"},
                    "client_id": "agent-1",
                    "revoked_at": 1000,
                }
            },
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None, key: Any = None) -> str:
        return jwt.encode(header or {"alg": "ES256", "kid": "broker-1", "typ": "secevent+jwt"}, claims, key or self.key)


def receiver(transmitter: Transmitter) -> tuple[EventReceiver, RevocationList]:
    async def uri() -> str:
        return f"{BROKER}/.well-known/jwks.json"

    revocations = RevocationList(max_token_lifetime=300, leeway=5, clock=Clock(1000))
    keys = KeyCache(transmitter.client(), uri, refetch_interval=10)
    return EventReceiver(keys, revocations, issuer=BROKER, audience=AUDIENCE, leeway=5), revocations


def test_a_signed_event_revokes_the_agent_and_a_replay_changes_nothing() -> None:
    transmitter = Transmitter()
    events, revocations = receiver(transmitter)
    value = transmitter.sign(transmitter.event())
    assert asyncio.run(events.receive(value)) == Revocation(ISSUER, "agent-1", "sa-1", 1000)
    assert revocations.covers(agent(issued_at=1000))
    assert asyncio.run(events.receive(value)) is None


def test_an_rs256_event_is_accepted_too() -> None:
    transmitter = Transmitter()
    transmitter.key = RSAKey.generate_key(2048, parameters={"kid": "broker-1"})  # type: ignore[assignment]
    events, revocations = receiver(transmitter)
    asyncio.run(
        events.receive(
            transmitter.sign(transmitter.event(), {"alg": "RS256", "kid": "broker-1", "typ": "secevent+jwt"})
        )
    )
    assert revocations.covers(agent())


@pytest.mark.parametrize(
    ("make", "err"),
    [
        (lambda t: t.sign(t.event(), {"alg": "ES256", "kid": "broker-1"}), "invalid_request"),
        (
            lambda t: t.sign(t.event(), {"alg": "HS256", "typ": "secevent+jwt"}, key=OctKey.import_key("s" * 32)),
            "invalid_request",
        ),
        (
            lambda t: t.sign(t.event(), key=ECKey.generate_key("P-256", parameters={"kid": "broker-1"})),
            "authentication_failed",
        ),
        (
            lambda t: t.sign(
                t.event(),
                key=ECKey.generate_key("P-256", parameters={"kid": "x"}),
                header={"alg": "ES256", "kid": "x", "typ": "secevent+jwt"},
            ),
            "invalid_key",
        ),
        (lambda t: t.sign(t.event(iss="http://127.0.0.1:4")), "invalid_issuer"),
        (lambda t: t.sign(t.event(aud="http://127.0.0.1:9/mcp")), "invalid_audience"),
        (lambda t: t.sign(t.event(aud=None)), "invalid_audience"),
        (lambda t: t.sign(t.event(jti=None)), "invalid_request"),
        (lambda t: t.sign(t.event(iat=int(time.time()) + 3600)), "invalid_request"),
        (lambda t: t.sign(t.event(events={"urn:other": {}})), "invalid_request"),
        (
            lambda t: t.sign(t.event(events={AGENT_REVOKED: {"client_id": "agent-1", "revoked_at": 1}})),
            "invalid_request",
        ),
        (lambda t: "not-a-jws", "invalid_request"),
    ],
)
def test_events_that_are_not_the_brokers_or_not_for_us_are_rejected_and_change_nothing(make: Any, err: str) -> None:
    transmitter = Transmitter()
    events, revocations = receiver(transmitter)
    with pytest.raises(RejectedEvent) as caught:
        asyncio.run(events.receive(make(transmitter)))
    assert caught.value.err == err
    assert len(revocations) == 0
