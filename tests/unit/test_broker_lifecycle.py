"""Lifecycle policy (issue 19) with a stand-in for Keycloak and a movable clock: the policy's new fields and their
errors, credential age (flags, automatic rotation, pickup), access reviews by risk tier, token lifetime per
environment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fake_idp import FakeIdentityProvider, broker_on

from sandbox.broker.auth import Principal
from sandbox.broker.clock import MovableClock
from sandbox.broker.errors import BadRequest, NotFound
from sandbox.broker.policy import Policy
from sandbox.broker.service import BrokerService, ProvisionRequest
from sandbox.config import PACKAGE_DIR
from sandbox.toolmap import ToolMap
from sandbox.yamlfile import FileError

FIXTURES = PACKAGE_DIR.parent / "fixtures"
TOOLS = ToolMap.load(FIXTURES / "tools.yaml")
ALICE = Principal("tenant_admin", "acme", "sub-alice", "alice", mfa=True)
ROLE = "roles:\n  r:\n    environments:\n      staging: [mcp:tool:logs.read]\n"


def refusal(tmp_path: Path, text: str) -> FileError:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(FileError) as caught:
        Policy.load(path, TOOLS)
    assert str(caught.value).startswith(f"{path}:{caught.value.line}:")
    return caught.value


# The policy file ---------------------------------------------------------------------------------------------


def test_the_shipped_policy_resolves_tiers_ages_and_lifetimes() -> None:
    policy = Policy.load(FIXTURES / "policy.yaml", TOOLS)
    writer, reader = policy.roles["invoice-writer"], policy.roles["read-only-analytics"]
    assert (writer.lifecycle.risk_tier, writer.lifecycle.review_interval_days) == ("high", 30)
    assert (reader.lifecycle.risk_tier, reader.lifecycle.review_interval_days) == ("low", 180)
    assert reader.token_lifetime("staging") == 300 and reader.token_lifetime("production") == 180
    assert policy.roles["production-deployer"].token_lifetime("production") == 120  # its own maximum is shorter
    runner = policy.roles["report-runner"].lifecycle
    assert (runner.max_credential_age_days, runner.rotate, runner.grace_seconds) == (30, "automatic", 3600)
    assert writer.lifecycle.rotate == "manual"
    problems = policy.check(
        role="read-only-analytics", environment="production", credential_type="client_secret", token_lifetime=200
    )
    assert [str(p) for p in problems] == [
        "token_lifetime: 200s exceeds role 'read-only-analytics''s maximum in production of 180s"
    ]


def test_a_token_lifetime_for_an_unknown_environment_names_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, ROLE + "environments:\n  qa: {token_lifetime: 60}\n")
    assert error.line == 6 and "unknown environment 'qa'" in str(error)


def test_a_bad_token_lifetime_names_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, ROLE + "environments:\n  staging:\n    token_lifetime: 0\n")
    assert error.line == 7 and "token_lifetime" in str(error)
    error = refusal(tmp_path, ROLE + "environments:\n  staging: {token_lifetime: 60, lifetime: 60}\n")
    assert error.line == 6 and "not a known field" in str(error)


def test_an_unknown_risk_tier_names_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, ROLE + "    risk_tier: severe\nrisk_tiers:\n  high: {review_interval_days: 30}\n")
    assert error.line == 5 and "unknown risk tier 'severe'" in str(error) and "['high']" in str(error)
    error = refusal(tmp_path, "defaults:\n  risk_tier: high\n" + ROLE)
    assert error.line == 2 and "declare it under risk_tiers" in str(error)


def test_a_bad_risk_tier_names_its_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, ROLE + "risk_tiers:\n  high:\n    review_interval_days: -1\n")
    assert error.line == 7 and "review_interval_days" in str(error)
    error = refusal(tmp_path, ROLE + "risk_tiers:\n  high: {max_credential_age_days: 30}\n")
    assert error.line == 6 and "review_interval_days" in str(error)


def test_bad_credential_age_fields_name_their_lines(tmp_path: Path) -> None:
    error = refusal(tmp_path, ROLE + "credential_age:\n  rotate: sometimes\n")
    assert error.line == 6 and "rotate" in str(error)
    error = refusal(tmp_path, ROLE + "credential_age:\n  grace_seconds: 999999999\n")
    assert error.line == 6 and "grace_seconds" in str(error)
    error = refusal(tmp_path, ROLE + "credential_age:\n  warn_days: -2\n")
    assert error.line == 6 and "warn_days" in str(error)
    error = refusal(tmp_path, ROLE + "    max_credential_age_days: 0\n")
    assert error.line == 5 and "max_credential_age_days" in str(error)
    error = refusal(tmp_path, ROLE + "    rotate: never\n")
    assert error.line == 5 and "rotate" in str(error)


# The service --------------------------------------------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[BrokerService, FakeIdentityProvider, MovableClock]]:
    keycloak, clock = FakeIdentityProvider(), MovableClock()
    async with broker_on(keycloak, tmp_path, clock) as service:
        yield service, keycloak, clock


def request(name: str, role: str, environment: str = "staging") -> ProvisionRequest:
    return ProvisionRequest(name=name, owner="o", role=role, environment=environment)


def actions(service: BrokerService, agent_id: str) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in service.reporting.audit_entries(ALICE, "acme", agent_id)]


async def test_an_agent_gets_its_environments_token_lifetime(world: Any) -> None:
    service, keycloak, _ = world
    prod = (await service.agents.provision(ALICE, "acme", request("prod", "read-only-analytics", "production"))).agent
    stage = (await service.agents.provision(ALICE, "acme", request("stage", "read-only-analytics"))).agent
    assert (prod.token_lifetime, stage.token_lifetime) == (180, 300)
    assert keycloak.clients[prod.client_id]["lifetime"] == 180


async def test_old_credentials_are_flagged_once_and_automatic_ones_rotate_with_the_grace(world: Any) -> None:
    service, keycloak, clock = world
    runner = (await service.agents.provision(ALICE, "acme", request("runner", "report-runner"))).agent
    writer = (await service.agents.provision(ALICE, "acme", request("writer", "invoice-writer"))).agent
    clock.advance(days=22)
    assert await service.credential_age.sweep() == {"credentials_flagged": 0, "credentials_rotated": 0}
    clock.advance(days=2)  # 24 days: within warn_days (7) of 30
    assert await service.credential_age.sweep() == {"credentials_flagged": 2, "credentials_rotated": 0}
    assert await service.credential_age.sweep() == {"credentials_flagged": 0, "credentials_rotated": 0}
    assert service.credential_age.report_of(writer.id).state == "near"
    clock.advance(days=7)
    assert await service.credential_age.sweep() == {"credentials_flagged": 2, "credentials_rotated": 1}
    assert service.agents.get_agent(ALICE, "acme", runner.id).status == "rotating"
    assert service.agents.get_agent(ALICE, "acme", writer.id).status == "active"  # rotate: manual, only flagged
    assert service.credential_age.report_of(writer.id).state == "past"
    assert service.credential_age.report_of(runner.id).state == "ok"  # the new secret is new
    assert keycloak.clients[runner.client_id]["secret"] == "rotated-secret"
    assert actions(service, runner.id)[1:] == [
        ("agent.credential_aging", "broker"),
        ("agent.credential_expired", "broker"),
        ("agent.rotated", "broker"),
    ]


async def test_the_agent_picks_up_its_new_secret_with_the_old_one_only(world: Any) -> None:
    service, _, clock = world
    runner = (await service.agents.provision(ALICE, "acme", request("runner", "report-runner"))).agent
    with pytest.raises(NotFound):  # no automatic rotation yet
        await service.credential_age.pick_up(runner.client_id, "generated-secret")
    clock.advance(days=31)
    await service.credential_age.sweep("acme")
    with pytest.raises(NotFound):
        await service.credential_age.pick_up(runner.client_id, "a-guess")
    picked = await service.credential_age.pick_up(runner.client_id, "generated-secret")
    assert picked.client_secret == "rotated-secret" and picked.grace_ends_at
    assert actions(service, runner.id)[-1][0] == "agent.credential_picked_up"
    await service.rotation.end_grace(ALICE, "acme", runner.id)
    with pytest.raises(NotFound):  # after the grace the old secret gets nothing
        await service.credential_age.pick_up(runner.client_id, "generated-secret")


async def test_a_manual_rotation_is_not_handed_out(world: Any) -> None:
    service, _, _ = world
    runner = (await service.agents.provision(ALICE, "acme", request("runner", "report-runner"))).agent
    await service.rotation.rotate(ALICE, "acme", runner.id, 600)
    with pytest.raises(NotFound):
        await service.credential_age.pick_up(runner.client_id, "generated-secret")


async def test_the_high_tier_comes_due_first_and_unused_scopes_are_removed_on_accept(world: Any) -> None:
    service, keycloak, clock = world
    writer = (await service.agents.provision(ALICE, "acme", request("writer", "invoice-writer"))).agent
    reader = (await service.agents.provision(ALICE, "acme", request("reader", "read-only-analytics"))).agent
    assert service.access_reviews.queue(ALICE, "acme") == []
    clock.advance(days=31)
    now = clock.now().isoformat()
    issuer = service.context.settings.issuer("acme")
    used = {"issuer": issuer, "client_id": writer.client_id, "tool": "invoices.list", "allowed": True, "at": now}
    service.reporting.ingest_usage([used], None)
    queue = service.access_reviews.queue(ALICE, "acme")
    assert [(a.id, a.review.reason, a.review.risk_tier) for a in queue] == [(writer.id, "access_review", "high")]
    review = service.access_reviews.recommendation(ALICE, "acme", writer.id)
    assert review.due and review.unused_scopes == ["mcp:tool:invoices.write"] and review.window_days == 30
    with pytest.raises(BadRequest):  # a used scope is not the admin's to remove through a review
        await service.access_reviews.accept(ALICE, "acme", writer.id, ["mcp:tool:invoices.read"])
    accepted = await service.access_reviews.accept(ALICE, "acme", writer.id, None)
    assert accepted.scopes == ["mcp:tool:invoices.read"]
    assert keycloak.clients[writer.client_id]["scopes"] == ["mcp:tool:invoices.read"]
    assert service.access_reviews.queue(ALICE, "acme") == []
    clock.advance(days=150)
    assert [a.id for a in service.access_reviews.queue(ALICE, "acme")] == [writer.id, reader.id]
