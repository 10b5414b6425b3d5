"""SSF events (signed SETs) and the revocation list: what is refused, for how long, and across a restart."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from mcp_fakes import AUDIENCE, ISSUER, Clock

from sandbox.jwt_signature import KeyCache
from sandbox.mcp_server.events import EventReceiver, RejectedEvent
from sandbox.mcp_server.principal import Principal
from sandbox.mcp_server.revocation_journal import RevocationJournal
from sandbox.mcp_server.revocations import Revocation, RevocationList
from sandbox.ssf import CREDENTIAL_CHANGE, SESSION_REVOKED, AgentSubject

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
            "sub_id": AgentSubject(ISSUER, "agent-1", "sa-1").as_sub_id(),
            "events": {SESSION_REVOKED: {"event_timestamp": 1000, "initiating_entity": "admin"}},
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
    assert asyncio.run(events.receive(value)) == [Revocation(ISSUER, "agent-1", "sa-1", 1000)]
    assert revocations.covers(agent(issued_at=1000))
    assert asyncio.run(events.receive(value)) == []


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
        (lambda t: t.sign(t.event(events={})), "invalid_request"),
        (lambda t: t.sign(t.event(events={SESSION_REVOKED: "now"})), "invalid_request"),
        (lambda t: t.sign(t.event(events={SESSION_REVOKED: {"event_timestamp": "1"}})), "invalid_request"),
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


@pytest.mark.parametrize(
    ("event", "ends"),
    [
        ({SESSION_REVOKED: {"event_timestamp": 1000}}, True),
        ({CREDENTIAL_CHANGE: {"credential_type": "x509", "change_type": "revoke", "event_timestamp": 1000}}, True),
        ({CREDENTIAL_CHANGE: {"credential_type": "x509", "change_type": "delete", "event_timestamp": 1000}}, True),
        ({CREDENTIAL_CHANGE: {"credential_type": "x509", "change_type": "update", "event_timestamp": 1000}}, False),
        ({"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {"event_timestamp": 1000}}, True),
        ({"https://example.com/event-type/something-new": {"anything": 1}}, False),
    ],
)
def test_events_that_end_access_revoke_and_all_others_are_acknowledged_and_ignored(
    event: dict[str, Any], ends: bool
) -> None:
    transmitter = Transmitter()
    events, revocations = receiver(transmitter)
    taken = asyncio.run(events.receive(transmitter.sign(transmitter.event(events=event))))
    assert taken == ([Revocation(ISSUER, "agent-1", "sa-1", 1000)] if ends else [])
    assert revocations.covers(agent(issued_at=1000)) is ends


def test_an_agent_subject_names_the_client_so_a_delegated_token_of_its_user_is_covered_too() -> None:
    transmitter = Transmitter()
    events, revocations = receiver(transmitter)
    asyncio.run(events.receive(transmitter.sign(transmitter.event(sub_id=AgentSubject(ISSUER, "agent-1").as_sub_id()))))
    assert revocations.covers(agent(subject="a-user"))  # the agent acting for a user: same client
    assert not revocations.covers(agent("agent-2", subject="a-user"))  # the user's other clients are not


def test_a_timestamp_after_the_set_itself_is_held_to_the_sets_iat() -> None:
    transmitter = Transmitter()
    events, _ = receiver(transmitter)
    late = transmitter.event(iat=1000, events={SESSION_REVOKED: {"event_timestamp": 1_615_304_991_643}})
    assert asyncio.run(events.receive(transmitter.sign(late)))[0].revoked_at == 1000


EXAMPLES = json.loads((Path(__file__).parents[2] / "fixtures" / "ssf" / "published-examples.json").read_text())


@pytest.mark.parametrize("example", EXAMPLES["examples"], ids=[e["name"] for e in EXAMPLES["examples"]])
def test_the_published_caep_and_risc_examples_are_taken_as_the_specifications_mean(example: dict[str, Any]) -> None:
    """Interop: SETs shaped as the OpenID Foundation's examples, signed by a transmitter, verified and applied."""
    transmitter = Transmitter()
    events, revocations = receiver(transmitter)
    claims = {**transmitter.event(iat=1000), **example["claims"]}
    if "sub_id" not in example["claims"]:
        del claims["sub_id"]
    taken = asyncio.run(events.receive(transmitter.sign(claims)))
    expected = example["acts"]
    assert taken == ([Revocation(**expected, revoked_at=1000)] if expected else [])
    assert len(revocations) == (1 if expected else 0)


def test_our_own_sets_carry_what_the_caep_interop_profile_requires() -> None:
    """The broker's session-revoked SET: iss, aud, iat, jti, sub_id, one event with event_timestamp."""
    from sandbox.broker.events import SigningKey, session_revoked

    key = SigningKey(ECKey.generate_key("P-256", private=True))
    subject = AgentSubject(ISSUER, "agent-1", "sa-1")
    claims = session_revoked(transmitter=BROKER, audience=AUDIENCE, subject=subject, at=1000, reason="r")
    value = key.sign(claims)
    decoded = jwt.decode(value, KeySet.import_key_set(key.jwks()))
    header = decoded.header
    assert decoded.claims == claims
    assert header["typ"] == "secevent+jwt" and header["alg"] == "ES256" and header["kid"] == key.kid
    assert {"iss", "aud", "iat", "jti", "sub_id", "events"} <= set(claims)
    assert "sub" not in claims and list(claims["events"]) == [SESSION_REVOKED]
    assert claims["events"][SESSION_REVOKED]["event_timestamp"] == 1000
    assert AgentSubject.from_sub_id(claims["sub_id"]) == subject


def test_the_journal_keeps_the_list_across_a_restart_and_forgets_what_no_token_can_outlive(tmp_path: Path) -> None:
    clock = Clock(1000)
    journal = RevocationJournal(tmp_path / "revocations.jsonl")
    first = RevocationList(max_token_lifetime=300, leeway=5, clock=clock, journal=journal)
    first.add(Revocation(ISSUER, "agent-1", "sa-1", 1000))
    first.add(Revocation(ISSUER, "agent-2", None, 1200))
    restarted = RevocationList(max_token_lifetime=300, leeway=5, clock=clock, journal=journal)
    assert restarted.covers(agent(issued_at=1000)) and restarted.covers(agent("agent-2", subject="x", issued_at=1200))
    clock.now = 1000 + 306
    later = RevocationList(max_token_lifetime=300, leeway=5, clock=clock, journal=journal)
    assert not later.covers(agent(issued_at=1000)) and later.covers(agent("agent-2", subject="x", issued_at=1200))
    assert len((tmp_path / "revocations.jsonl").read_text().splitlines()) == 1  # rewritten without the old one


def test_a_torn_last_line_does_not_stop_the_journal_loading(tmp_path: Path) -> None:
    path = tmp_path / "revocations.jsonl"
    RevocationJournal(path).append(Revocation(ISSUER, "agent-1", None, 1000))
    with path.open("a") as out:
        out.write('{"issuer": "http://127.0.0.1:1/realms/ac')
    assert RevocationJournal(path).load(horizon=0) == [Revocation(ISSUER, "agent-1", None, 1000)]
