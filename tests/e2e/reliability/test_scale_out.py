"""Two broker processes on one PostgreSQL serving the same tenant at once: provisions spread over both, the same
name asked of both at the same moment, a rotation on one and a revocation on the other of the same agent. No
state is lost or doubled: each agent once in the database and in Keycloak, each act audited once, the audit
chain unforked."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from broker.conftest import Broker, Tenant
from broker.test_lifecycle import refused, secret_credential, token_for
from reference_mcp import INITIALIZE, post

from sandbox.pytest_plugin import SandboxStack

from .conftest import BrokerProcess, audit_verify, keycloak_agents, live_agents
from .postgres import Cluster, postgres_cluster

SPREAD = 12  # agents provisioned over both brokers at once
SAME_NAME = 6  # callers asking for one name, half of them at each broker
RACES = 4  # agents rotated on one broker while revoked on the other


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with postgres_cluster() as running:
        yield running


@pytest.fixture
def brokers(broker: Broker, sandbox_stack: SandboxStack, tenant: Tenant, cluster: Cluster) -> Iterator[list[Broker]]:
    # Both transmit SSF events under the stack broker's public URL, with the key file all of them read.
    extra = {"SANDBOX_TENANTS": json.dumps([tenant.name]), "SANDBOX_BROKER_PUBLIC_URL": broker.settings.broker_url}
    processes = [
        BrokerProcess(broker.settings, cluster.url(), name=f"broker-scale-out-{index}", extra=extra) for index in (1, 2)
    ]
    try:
        for process in processes:  # one after the other: the first makes the schema
            process.start()
        yield [process.client(sandbox_stack) for process in processes]
    finally:
        for process in processes:
            process.stop()


@pytest.mark.xdist_group("scale-out")
@pytest.mark.reliability(
    "Scale out",
    f"Two broker processes on one PostgreSQL: {SPREAD} provisions spread over both, {SAME_NAME} of one name at "
    f"both at once, {RACES} agents rotated on one while revoked on the other",
    "every agent once (broker = Keycloak), one winner per name, races end revoked, each act audited once, "
    "the audit chain verifies",
)
def test_two_brokers_on_one_database_lose_and_double_nothing(
    brokers: list[Broker], tenant: Tenant, cluster: Cluster, reliability: Any
) -> None:
    first, second = brokers
    token = tenant.admins["alice"].token()
    agents = f"/tenants/{tenant.name}/agents"

    def provision(via: Broker, name: str) -> Any:
        body = {"name": name, "owner": "o", "role": "invoice-writer", "environment": "staging"}
        return via.call("POST", agents, token, body)

    with ThreadPoolExecutor(6) as pool:
        spread = list(pool.map(lambda i: provision(brokers[i % 2], f"spread-{i}"), range(SPREAD)))
    assert [a.status_code for a in spread] == [201] * SPREAD, [a.text for a in spread if a.status_code != 201]
    reliability.add(SPREAD)

    with ThreadPoolExecutor(SAME_NAME) as pool:
        same = list(pool.map(lambda i: provision(brokers[i % 2], "only-one"), range(SAME_NAME)))
    assert sorted(a.status_code for a in same) == [201] + [409] * (SAME_NAME - 1), [a.text for a in same]
    reliability.add(SAME_NAME)

    racers = [a.json() for a in spread[:RACES]]
    with ThreadPoolExecutor(2 * RACES) as pool:
        rotations = [
            pool.submit(first.call, "POST", f"{agents}/{a['agent']['id']}/rotate", token, {"grace_seconds": 60})
            for a in racers
        ]
        revocations = [
            pool.submit(second.call, "POST", f"/revoke/{a['agent']['id']}", token, {"reason": "race"}) for a in racers
        ]
        answers = [f.result() for f in rotations + revocations]
    assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    for racer in racers:
        assert first.call("GET", f"{agents}/{racer['agent']['id']}", token).json()["status"] == "revoked"
        refused(tenant, secret_credential(racer))
        reliability.add()

    seen_by_first, seen_by_second = live_agents(first, tenant, token), live_agents(second, tenant, token)
    assert seen_by_first == seen_by_second
    assert set(seen_by_first) == set(keycloak_agents(first.settings, tenant.name))
    assert len(seen_by_first) == SPREAD - RACES + 1
    audit = first.call("GET", f"/tenants/{tenant.name}/audit", token).json()
    per_act = Counter((e["agent_id"], e["action"]) for e in audit)
    doubled = {act: n for act, n in per_act.items() if n > 1 and act[1] != "agent.rotated"}
    assert doubled == {}
    assert sum(1 for (_, action) in per_act if action == "agent.provisioned") == SPREAD + 1
    assert sum(1 for (_, action) in per_act if action == "agent.revoked") == RACES
    verified = audit_verify(first.settings, cluster.url())
    assert verified.returncode == 0, verified.stderr


@pytest.mark.xdist_group("scale-out")
def test_the_stack_server_takes_the_revocation_events_of_either_broker(
    brokers: list[Broker], tenant: Tenant, sandbox_stack: SandboxStack
) -> None:
    """Each broker process pushes its own SSF event, signed with the shared key under the one public URL; the
    stack's MCP server, which never heard of either process, accepts both and refuses both agents' tokens."""
    server = sandbox_stack.settings.mcp_url
    token = tenant.admins["alice"].token()
    for via in brokers:
        provisioned = via.provision(tenant, tenant.admins["carol"].token(), role="log-reader", servers=[server])
        access = token_for(tenant, secret_credential(provisioned)).access_token
        assert post(server, INITIALIZE, token=access).status_code == 200  # control
        revoked = via.call("POST", f"/revoke/{provisioned['agent']['id']}", token, {"reason": "scale-out"})
        assert revoked.status_code == 200, revoked.text
        assert [(e["server"], e["delivered"]) for e in revoked.json()["events"]] == [(server, True)]
        assert post(server, INITIALIZE, token=access).status_code == 401
