"""The broker SIGKILLed in the middle of a provision, a rotation and a revocation at once, then started again.

A broker process of its own (the stack's code, its own port and SQLite database, the session's Keycloak) is
stopped at exact points: each operation's next Keycloak call is held at a proxy until the broker is dead, and
never sent. After the restart nothing is half-made, nothing that should be dead works, no audit entry is lost
or doubled, and each operation completes by itself or on a retry.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker.conftest import Broker, Tenant
from broker.servers import FlakyKeycloak, serving
from broker.test_lifecycle import refused, secret_credential, token_for
from reference_mcp import INITIALIZE, post

from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.pytest_plugin import SandboxStack

from .conftest import BrokerProcess, audit_verify, keycloak_agents, wait_for

#: Seconds before the restarted broker calls a provision with no result interrupted. The first broker keeps the
#: default (two minutes): on a busy machine its own provisions may take several seconds, and a short limit would
#: undo them while they run. The restarted one needs a short limit, yet longer than its retried provision takes.
INTERRUPTED_AFTER = 30


def internal_id(broker: Broker, tenant: Tenant, client_id: str) -> str:
    found = asyncio.run(KeycloakAdapter.from_settings(broker.settings).find_client(tenant.name, client_id))
    assert found is not None
    return found


def in_background(call: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the broker died under it: a transport error
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.xdist_group("broker-killed")
@pytest.mark.reliability(
    "Faults",
    "Broker SIGKILLed mid-provision, mid-rotation and mid-revoke (one kill, three operations in flight)",
    "after restart: half-made agent undone and retryable, interrupted rotation completed with its grace, "
    "revocation resumed (credential dead, old token 401 at the MCP server), audit complete and verified",
)
def test_a_broker_killed_mid_operation_leaves_nothing_half_done(
    broker: Broker, sandbox_stack: SandboxStack, tenant: Tenant, tmp_path: Path, reliability: Any
) -> None:
    settings = broker.settings
    database = f"sqlite:///{tmp_path / 'killed-broker.db'}"
    proxy = FlakyKeycloak(settings.keycloak_base_url)
    process = BrokerProcess(
        settings,
        database,
        name="broker-killed",
        extra={"SANDBOX_TENANTS": json.dumps([tenant.name])},
    )
    alice = tenant.admins["alice"].token()
    try:
        with serving(proxy.app()) as proxy_url:
            process.start("--keycloak-admin-url", proxy_url)
            first = process.client(sandbox_stack)
            rotor = first.provision(tenant, alice, name="rotor", role="invoice-writer")
            leaver = first.provision(tenant, alice, name="leaver", role="invoice-writer")
            leaver_token = token_for(tenant, secret_credential(leaver)).access_token
            introspecting = settings.mcp_server("introspect").url  # asks Keycloak: sees what the broker did there
            assert post(introspecting, INITIALIZE, token=leaver_token).status_code == 200  # control

            rotor_id = internal_id(broker, tenant, rotor["agent"]["client_id"])
            leaver_id = internal_id(broker, tenant, leaver["agent"]["client_id"])
            holds = [
                proxy.hold("GET", r"/service-account-user$"),  # the new agent's client exists by then
                proxy.hold("PUT", rf"/clients/{rotor_id}$"),  # Keycloak made the new secret by then
                proxy.hold("DELETE", rf"/clients/{leaver_id}$"),  # disabled and events pushed by then
            ]
            agents = f"/tenants/{tenant.name}/agents"
            body = {"name": "halfway", "owner": "o", "role": "log-reader", "environment": "staging"}
            calls = [
                in_background(lambda: first.call("POST", agents, alice, body)),
                in_background(
                    lambda: first.call("POST", f"{agents}/{rotor['agent']['id']}/rotate", alice, {"grace_seconds": 600})
                ),
                in_background(lambda: first.call("POST", f"/revoke/{leaver['agent']['id']}", alice, {"reason": "x"})),
            ]
            for hold in holds:
                assert hold.arrived.wait(60), "an operation did not reach its Keycloak call"
            process.kill()
            for hold in holds:
                hold.release(forward=False)  # the dead broker's calls never reach Keycloak
            for thread, outcome in calls:
                thread.join(30)
                assert isinstance(outcome[0], httpx.TransportError), outcome  # the caller saw the broker go away

        process.environment["SANDBOX_BROKER_INTERRUPTED_AFTER"] = str(INTERRUPTED_AFTER)
        process.start()  # the same database; straight to Keycloak
        again = process.client(sandbox_stack)
        listing = f"/tenants/{tenant.name}/agents"

        def status_of(name: str) -> str:
            return next(a["status"] for a in again.call("GET", listing, alice).json() if a["name"] == name)

        # The half-made agent: undone (its client removed), and the same request succeeds on a retry.
        wait_for(
            lambda: status_of("halfway") == "failed",
            budget=INTERRUPTED_AFTER + 90,
            what="the interrupted provision undone",
        )
        clients = keycloak_agents(settings, tenant.name)
        assert not [c for c in clients if c.startswith("agent-halfway-")], clients
        retried = again.provision(tenant, alice, **body)
        token_for(tenant, secret_credential(retried))
        reliability.add()

        # The revocation: resumed by the restarted broker; the credential and the old token are dead.
        wait_for(lambda: status_of("leaver") == "revoked", budget=60, what="the interrupted revocation resumed")
        refused(tenant, secret_credential(leaver))
        assert leaver["agent"]["client_id"] not in keycloak_agents(settings, tenant.name)
        wait_for(
            lambda: post(introspecting, INITIALIZE, token=leaver_token).status_code == 401,
            budget=settings.mcp_introspection_cache_ttl + 10,
            what="the revoked agent's old token refused by the MCP server",
        )
        reliability.add()

        # The rotation: the old secret still works; the retry hands out the secret Keycloak made, with the grace.
        token_for(tenant, secret_credential(rotor))
        rotated = again.call("POST", f"{listing}/{rotor['agent']['id']}/rotate", alice, {"grace_seconds": 600})
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["credential"]["client_secret"]
        token_for(tenant, secret_credential(rotor))  # the old one for the grace
        token_for(tenant, secret_credential(rotor, new_secret))
        reliability.add()

        # The audit: every act once, nothing lost, the chain intact.
        actions = [
            (e["agent_id"], e["action"]) for e in again.call("GET", f"/tenants/{tenant.name}/audit", alice).json()
        ]
        by_agent = {a["name"]: a["id"] for a in again.call("GET", listing, alice).json() if a["status"] != "failed"}
        failed = next(a["id"] for a in again.call("GET", listing, alice).json() if a["status"] == "failed")
        assert [a for i, a in actions if i == failed] == ["agent.provision_failed"]
        assert [a for i, a in actions if i == by_agent["halfway"]] == ["agent.provisioned"]
        assert [a for i, a in actions if i == by_agent["rotor"]] == ["agent.provisioned", "agent.rotated"]
        assert [a for i, a in actions if i == by_agent["leaver"]] == ["agent.provisioned", "agent.revoked"]
        verified = audit_verify(settings, database)
        assert verified.returncode == 0, verified.stderr
    finally:
        process.stop()
        for hold in proxy.holds:
            hold.release(forward=False)
