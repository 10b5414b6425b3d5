"""Network zones: what a zone may be, how a source address is compared, the zone claim a resource server reads."""

from __future__ import annotations

import json

import pytest

from sandbox.jwt_signature import InvalidToken
from sandbox.mcp_server import challenges
from sandbox.mcp_server.principal import principal_from_claims
from sandbox.zones import ZONE_CLAIM, same_address, zone_address_problem

CLAIMS = {"iss": "http://127.0.0.1:1/realms/a", "client_id": "agent-x", "sub": "sa", "iat": 1, "exp": 2}


@pytest.mark.parametrize("value", ["127.0.0.2", "127.255.0.1"])
def test_a_zone_is_an_ipv4_loopback_address(value: str) -> None:
    assert zone_address_problem(value) is None


@pytest.mark.parametrize(
    ("value", "reason"), [("192.0.2.1", "not in 127.0.0.0/8"), ("::1", "not in 127.0.0.0/8"), ("ops", "not an IP")]
)
def test_anything_else_is_refused_with_the_reason(value: str, reason: str) -> None:
    assert reason in (zone_address_problem(value) or "")


def test_source_addresses_compare_as_addresses() -> None:
    assert same_address("127.0.0.2", "127.0.0.2")
    assert same_address("127.0.0.2", "::ffff:127.0.0.2")  # a dual-stack socket's form of the same address
    assert not same_address("127.0.0.2", "127.0.0.3")
    assert not same_address("127.0.0.2", None) and not same_address("127.0.0.2", "nonsense")


def test_the_zone_claim_limits_the_principal() -> None:
    assert principal_from_claims(CLAIMS, "t").zone is None
    assert principal_from_claims({**CLAIMS, ZONE_CLAIM: "127.0.0.2"}, "t").zone == "127.0.0.2"
    for bad in ("198.51.100.1", 7):
        with pytest.raises(InvalidToken, match=ZONE_CLAIM):
            principal_from_claims({**CLAIMS, ZONE_CLAIM: bad}, "t")


def test_the_refusal_names_the_zone_and_the_source() -> None:
    answer = challenges.outside_zone(zone="127.0.0.2", source="127.0.0.3")
    body = json.loads(answer.body)
    assert answer.status_code == 403 and body["error"] == "outside_zone" and body["zone"] == "127.0.0.2"
    assert "127.0.0.3" in body["error_description"]
