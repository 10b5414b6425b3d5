"""The stack broker's API fuzzed from its own OpenAPI document (schemathesis), so an endpoint added later is fuzzed
too: every operation with generated parameters and bodies as a tenant admin, then the state checked; and every
operation that takes a tenant or an agent, called by one tenant's admin with another tenant's ids."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from broker.conftest import Broker, Tenant
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.schemas import BaseSchema

from .conftest import LIVE, audit_verify, keycloak_agents, live_agents
from .test_audit_tamper import copy_of_the_stack_database

EXAMPLES_PER_OPERATION = 10
ISOLATION_EXAMPLES_PER_OPERATION = 4
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure reproduces, the table's counts stay put
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def broker_api(broker: Broker) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{broker.url}/openapi.json")


def fuzz_each_operation(schema: BaseSchema, examples: int, check: Callable[[Any], None]) -> list[str]:
    """Run ``check`` on ``examples`` generated cases of every operation (schemathesis strategies, hypothesis
    search); the failures of all operations, each with its shrunk case, instead of stopping at the first."""
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the OpenAPI document lists no operation"
    for operation in operations:

        @settings(FUZZ_SETTINGS, max_examples=examples)
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            check(case)

        try:
            run()
        except AssertionError as failure:
            failures.append(f"{operation.method.upper()} {operation.path}: {str(failure).splitlines()[0][:300]}")
    return failures


@dataclass
class FuzzWorld:
    tenant: Tenant
    token: str
    agents: list[str]
    server_errors: list[str] = field(default_factory=list)
    turn: Iterator[int] = field(default_factory=itertools.count)


@pytest.fixture(scope="module")
def fuzzed(broker: Broker) -> FuzzWorld:
    """A tenant of its own for the fuzzer, with a few real agents for it to find (and change, and revoke)."""
    tenant = broker.new_tenant("fz")
    token = tenant.admins["alice"].token()
    agents = [broker.provision(tenant, token, role=role)["agent"]["id"] for role in ("log-reader", "invoice-writer")]
    return FuzzWorld(tenant, token, agents)


@pytest.mark.xdist_group("broker-fuzz")
@pytest.mark.reliability(
    "Hostile input",
    f"Broker API fuzzed from its OpenAPI document: every operation, {EXAMPLES_PER_OPERATION} generated requests "
    "each, as a tenant admin with MFA (own tenant and agents half the time)",
    "no 5xx",
)
def test_the_broker_api_never_answers_5xx_to_generated_requests(
    broker_api: BaseSchema, fuzzed: FuzzWorld, reliability: Any
) -> None:
    def check(case: Any) -> None:
        if next(fuzzed.turn) % 2 == 0:  # half the time the tenant and agent are real ones: deeper than the 404
            if "tenant" in case.path_parameters:
                case.path_parameters["tenant"] = fuzzed.tenant.name
            if "agent_id" in case.path_parameters:
                case.path_parameters["agent_id"] = fuzzed.agents[next(fuzzed.turn) % len(fuzzed.agents)]
        response = case.call(headers={"Authorization": f"Bearer {fuzzed.token}"}, timeout=60)
        assert response.status_code < 500, f"{case.formatted_path} -> {response.status_code}: {response.text[:200]}"
        reliability.add()

    fuzzed.server_errors = fuzz_each_operation(broker_api, EXAMPLES_PER_OPERATION, check)
    assert fuzzed.server_errors == []


@pytest.mark.xdist_group("broker-fuzz")
@pytest.mark.reliability(
    "Hostile input",
    "State after the fuzzing: audit chains, agents in the broker against clients in Keycloak",
    "audit verifies; every live agent has its one Keycloak client (enabled exactly when usable) and one "
    "provisioning entry; none stuck provisioning",
)
def test_the_state_after_fuzzing_is_consistent(
    broker: Broker, fuzzed: FuzzWorld, tmp_path: Path, reliability: Any
) -> None:
    assert fuzzed.server_errors == []
    verified = audit_verify(broker.settings, copy_of_the_stack_database(broker, tmp_path / "after-fuzz.db"))
    assert verified.returncode == 0, verified.stderr
    reliability.add()  # the audit chains
    live = live_agents(broker, fuzzed.tenant, fuzzed.token)
    clients = keycloak_agents(broker.settings, fuzzed.tenant.name)
    assert set(live) == set(clients), (sorted(live), sorted(clients))
    for client_id, agent in live.items():
        assert agent["status"] in LIVE and agent["status"] != "provisioning", agent
        assert clients[client_id] == (agent["status"] in ("active", "rotating")), (agent["status"], clients[client_id])
        entries = broker.call("GET", f"/tenants/{fuzzed.tenant.name}/audit", fuzzed.token, agent_id=agent["id"]).json()
        assert [e["action"] for e in entries].count("agent.provisioned") == 1
        reliability.add()


@dataclass
class Neighbours:
    """Tenant A's admin, and tenant B's ids and what must never be shown to A."""

    token: str
    tenant: str
    agent_id: str
    private: list[str]


@pytest.fixture(scope="module")
def neighbours(broker: Broker) -> Neighbours:
    intruder = broker.new_tenant("ia")
    victim = broker.new_tenant("ib")
    victim_token = victim.admins["alice"].token()
    agent = broker.provision(
        victim, victim_token, name="victim-bot", owner="owner-of-the-victim-bot@b.example", role="invoice-writer"
    )["agent"]
    private = [agent["client_id"], agent["name"], agent["owner"], victim.issuer]
    return Neighbours(intruder.admins["alice"].token(), victim.name, agent["id"], private)


@pytest.mark.xdist_group("broker-fuzz")
@pytest.mark.reliability(
    "Abuse",
    "Tenant isolation: every operation that takes a tenant or an agent (from the OpenAPI document), called by "
    f"tenant A's admin with tenant B's ids, {ISOLATION_EXAMPLES_PER_OPERATION} generated requests each",
    "always 404, nothing of B in the answer",
)
def test_another_tenants_ids_are_404_everywhere(
    broker_api: BaseSchema, neighbours: Neighbours, reliability: Any
) -> None:
    def check(case: Any) -> None:
        for name, value in (("tenant", neighbours.tenant), ("agent_id", neighbours.agent_id)):
            if name in case.path_parameters:
                case.path_parameters[name] = value
        response = case.call(headers={"Authorization": f"Bearer {neighbours.token}"}, timeout=60)
        body = json.dumps(case.body, default=str)[:200]
        assert response.status_code == 404, (
            f"{case.formatted_path} {body} -> {response.status_code}: {response.text[:300]}"
        )
        leaked = [value for value in neighbours.private if value in response.text]
        assert leaked == [], f"{case.formatted_path} {body} showed {leaked}"
        reliability.add()

    scoped = broker_api.include(path_regex=r"\{(tenant|agent_id)\}")
    assert fuzz_each_operation(scoped, ISOLATION_EXAMPLES_PER_OPERATION, check) == []
