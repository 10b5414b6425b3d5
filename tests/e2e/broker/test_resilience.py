"""Dormancy with a movable clock, Keycloak down, and Keycloak failing halfway through an operation.

These run a second broker in-process (its own database, same Keycloak), so the shared stack is never
stopped or disturbed: one with a clock the test moves, one whose Admin REST calls go to a closed port,
one whose Admin REST calls pass a proxy that fails the calls the test names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.broker.app import create_app
from sandbox.broker.clock import MovableClock
from sandbox.cli import app as cli
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.realm import ADMIN_CLIENT_ID
from sandbox.stack.ports import free_port
from sandbox.stack_secrets import Secrets

from .conftest import Broker, Tenant
from .servers import FlakyKeycloak, serving
from .test_lifecycle import refused, report_usage, secret_credential, token_for


@contextmanager
def second_broker(broker: Broker, tmp_path: Path, **options: Any) -> Iterator[Broker]:
    port = free_port()
    settings = broker.settings.model_copy(
        update={"broker_port": port, "broker_database_url": f"sqlite:///{tmp_path / 'second-broker.db'}"}
    )
    with serving(create_app(settings, **options), port=port):
        other = Broker(broker.stack)
        other.settings, other.url = settings, settings.broker_url
        other.http.base_url = settings.broker_url  # type: ignore[assignment]
        yield other
        other.http.close()


def sandbox_tenant(broker: Broker) -> Tenant:
    name = broker.stack.tenants[0]
    admin = broker.sandbox_admin(name)
    return Tenant(name, broker.settings.issuer(name), {"admin": admin})


def keycloak_client(broker: Broker, tenant: str, client_id: str) -> str | None:
    """Keycloak's id of the client, asked directly (a fresh adapter: each asyncio.run has its own loop)."""
    return asyncio.run(KeycloakAdapter.from_settings(broker.settings).find_client(tenant, client_id))


def test_dormancy_moves_idle_agents_to_review(broker: Broker, tmp_path: Path) -> None:
    clock = MovableClock()
    with second_broker(broker, tmp_path, clock=clock) as other:
        tenant = sandbox_tenant(other)
        admin = tenant.admins["admin"].token()
        logs = other.provision(tenant, admin, role="log-reader")  # 14 days
        analytics = other.provision(tenant, admin, role="read-only-analytics")  # 30 days
        busy = other.provision(tenant, admin, role="read-only-analytics")
        token_for(tenant, secret_credential(logs))
        scan = f"/tenants/{tenant.name}/dormancy/scan"

        clock.advance(days=13)
        assert other.call("POST", scan, admin).json()["dormant"] == []
        clock.advance(days=2)
        dormant = [a["id"] for a in other.call("POST", scan, admin).json()["dormant"]]
        assert dormant == [logs["agent"]["id"]]
        refused(tenant, secret_credential(logs))

        clock.advance(days=16)
        report_usage(
            other, tenant, busy["agent"]["client_id"], "analytics.query", allowed=True, at=clock.now().timestamp()
        )
        dormant = {a["id"] for a in other.call("POST", scan, admin).json()["dormant"]}
        assert dormant == {analytics["agent"]["id"]}
        queue = {a["id"] for a in other.call("GET", f"/tenants/{tenant.name}/review-queue", admin).json()}
        assert queue == {logs["agent"]["id"], analytics["agent"]["id"]}

        review = f"/tenants/{tenant.name}/agents/{{}}/review"
        kept = other.call(
            "POST", review.format(logs["agent"]["id"]), admin, {"decision": "keep", "reason": "still used"}
        )
        assert kept.json()["status"] == "active"
        token_for(tenant, secret_credential(logs))
        gone = other.call("POST", review.format(analytics["agent"]["id"]), admin, {"decision": "revoke"})
        assert gone.json()["status"] == "revoked"
        refused(tenant, secret_credential(analytics))
        entries = other.call("GET", f"/tenants/{tenant.name}/audit", admin, agent_id=logs["agent"]["id"]).json()
        assert [e["action"] for e in entries][-2:] == ["agent.dormant", "agent.review_kept"]
        assert "no token issued and no tool call for 14 days" in entries[-2]["reason"]


@pytest.mark.reliability(
    "Faults",
    "Keycloak unreachable when an agent is provisioned (API and CLI)",
    "503 with a one-line cause and fix; the agent recorded failed; nothing in Keycloak",
)
def test_keycloak_down_leaves_no_agent_and_says_so(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    down = KeycloakAdapter(closed, ADMIN_CLIENT_ID, Secrets(broker.settings).get(ADMIN_CLIENT_ID) or "")
    with second_broker(broker, tmp_path, adapter=down) as other:
        tenant = sandbox_tenant(other)
        admin = tenant.admins["admin"].token()
        response = other.call(
            "POST",
            f"/tenants/{tenant.name}/agents",
            admin,
            {"name": "doomed", "owner": "o", "role": "log-reader", "environment": "staging"},
        )
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "idp_unavailable" and "unreachable" in body["detail"]
        assert "recorded as failed" in body["detail"]
        agents = other.call("GET", f"/tenants/{tenant.name}/agents", admin).json()
        assert [(a["name"], a["status"]) for a in agents] == [("doomed", "failed")]
        assert keycloak_client(broker, tenant.name, agents[0]["client_id"]) is None
        reliability.add()  # through the API

        monkeypatch.setenv("SANDBOX_BROKER_PORT", str(other.settings.broker_port))
        monkeypatch.setenv("SANDBOX_BROKER_TOKEN", admin)
        result = CliRunner().invoke(
            cli,
            ["agents", "provision", "-t", tenant.name, "--name", "doomed-too", "--owner", "o", "--role", "log-reader"],
        )
        assert result.exit_code == 1
        assert "Keycloak" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        reliability.add()  # through the CLI


@pytest.mark.reliability(
    "Faults",
    "Keycloak failing one chosen call halfway through a provision and a revocation",
    "provision compensated (nothing left in Keycloak); revocation resumable, credentials dead meanwhile",
)
def test_keycloak_failing_halfway_is_compensated_or_resumed(broker: Broker, tmp_path: Path, reliability: Any) -> None:
    proxy = FlakyKeycloak(broker.settings.keycloak_base_url)
    with serving(proxy.app()) as proxy_url:
        flaky = KeycloakAdapter(proxy_url, ADMIN_CLIENT_ID, Secrets(broker.settings).get(ADMIN_CLIENT_ID) or "")
        with second_broker(broker, tmp_path, adapter=flaky) as other:
            tenant = sandbox_tenant(other)
            admin = tenant.admins["admin"].token()

            proxy.fail("GET", r"/service-account-user$")  # the client exists by then: it must be removed again
            body = {"name": "halfway", "owner": "o", "role": "log-reader", "environment": "staging"}
            failed = other.call("POST", f"/tenants/{tenant.name}/agents", admin, body)
            assert failed.status_code == 503 and "nothing was left in Keycloak" in failed.json()["detail"]
            agent = other.call("GET", f"/tenants/{tenant.name}/agents", admin).json()[0]
            assert agent["status"] == "failed"
            assert keycloak_client(broker, tenant.name, agent["client_id"]) is None
            reliability.add()  # the provision, compensated
            proxy.heal()

            provisioned = other.provision(tenant, admin, **body)
            agent_id, client_id = provisioned["agent"]["id"], provisioned["agent"]["client_id"]
            proxy.fail("DELETE", r"/clients/[0-9a-f-]+$")
            interrupted = other.call("POST", f"/revoke/{agent_id}", admin, {"reason": "halfway"})
            assert interrupted.status_code == 503 and "removal is pending" in interrupted.json()["detail"]
            assert other.call("GET", f"/tenants/{tenant.name}/agents/{agent_id}", admin).json()["status"] == "revoking"
            refused(tenant, secret_credential(provisioned))  # disabled before the failure: already dead
            proxy.heal()
            resumed = other.call("POST", f"/revoke/{agent_id}", admin, {"reason": "again"})
            assert resumed.status_code == 200 and resumed.json()["agent"]["status"] == "revoked"
            assert keycloak_client(broker, tenant.name, client_id) is None
            actions = [e["action"] for e in other.call("GET", f"/tenants/{tenant.name}/audit", admin).json()]
            assert actions.count("agent.provision_failed") == 1 and actions.count("agent.revoked") == 1
            reliability.add()  # the revocation, resumed
