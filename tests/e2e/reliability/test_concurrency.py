"""Races against the stack's broker: many provisions of one agent name at once, and a rotation and a revocation
of one agent at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from broker.conftest import Broker, Tenant
from broker.test_lifecycle import refused, secret_credential

from .conftest import keycloak_agents, live_agents

SAME_NAME_CALLERS = 8
ROUNDS = 6


@pytest.mark.reliability(
    "Concurrency",
    f"{SAME_NAME_CALLERS} provisions of one agent name at the same moment",
    "one agent (201), every other caller 409; one Keycloak client",
)
def test_concurrent_provisions_of_one_name_give_one_agent(broker: Broker, tenant: Tenant, reliability: Any) -> None:
    alice = tenant.admins["alice"].token()
    body = {"name": "twin", "owner": "o", "role": "log-reader", "environment": "staging"}
    with ThreadPoolExecutor(SAME_NAME_CALLERS) as pool:
        answers = list(
            pool.map(
                lambda _: broker.call("POST", f"/tenants/{tenant.name}/agents", alice, body), range(SAME_NAME_CALLERS)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * (SAME_NAME_CALLERS - 1), [a.text for a in answers]
    assert all("\n" not in a.json()["detail"] for a in answers if a.status_code == 409)
    twins = [a for a in live_agents(broker, tenant, alice).values() if a["name"] == "twin"]
    assert len(twins) == 1
    assert [c for c in keycloak_agents(broker.settings, tenant.name) if c.startswith("agent-twin-")] == [
        twins[0]["client_id"]
    ]
    reliability.add(len(answers))  # every caller's answer was judged above: one 201, the others 409


@pytest.mark.reliability(
    "Concurrency",
    f"Rotate and revoke of one agent at the same moment ({ROUNDS} rounds, both orders)",
    "always revoked: credential refused, client gone, revocation audited once and last",
)
def test_concurrent_rotate_and_revoke_end_revoked(broker: Broker, tenant: Tenant, reliability: Any) -> None:
    alice = tenant.admins["alice"].token()
    for round_ in range(ROUNDS):
        provisioned = broker.provision(tenant, alice, role="invoice-writer")
        agent = provisioned["agent"]
        rotate = f"/tenants/{tenant.name}/agents/{agent['id']}/rotate"
        revoke = f"/revoke/{agent['id']}"
        calls = [
            lambda path=rotate: broker.call("POST", path, alice, {"grace_seconds": 60}),
            lambda path=revoke: broker.call("POST", path, alice, {"reason": "race"}),
        ]
        if round_ % 2:
            calls.reverse()
        with ThreadPoolExecutor(2) as pool:
            answers = [future.result() for future in [pool.submit(call) for call in calls]]
        assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
        final = broker.call("GET", f"/tenants/{tenant.name}/agents/{agent['id']}", alice).json()
        assert final["status"] == "revoked"
        refused(tenant, secret_credential(provisioned))
        rotated = next((a for a in answers if a.status_code == 200 and "grace_ends_at" in a.json()), None)
        if rotated is not None:  # the rotation went first: its new secret is dead too
            refused(tenant, secret_credential(provisioned, rotated.json()["credential"]["client_secret"]))
        assert agent["client_id"] not in keycloak_agents(broker.settings, tenant.name)
        actions = [
            e["action"] for e in broker.call("GET", f"/tenants/{tenant.name}/audit", alice, agent_id=agent["id"]).json()
        ]
        assert actions[-1] == "agent.revoked" and actions.count("agent.revoked") == 1, actions
        reliability.add()
