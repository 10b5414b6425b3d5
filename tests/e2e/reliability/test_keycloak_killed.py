"""Keycloak SIGKILLed while a provision, a rotation and a revocation are each halfway through, then restarted.

A Keycloak of its own (started by the stack's code in a state directory of its own, never the session's) and a
broker in this process whose Admin REST calls pass a proxy. Each operation's next Keycloak call is held at the
proxy; Keycloak is killed; the held calls then find it gone. The callers get a clear 503; while Keycloak is
down nothing else can be done but nothing is lost either; once it is back, housekeeping finishes the work and
a retried rotation completes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker.servers import FlakyKeycloak, serving

from sandbox.admin.operator import operator_token
from sandbox.agent.tokens import ClientSecretCredential, Token, TokenRefused, fetch_token
from sandbox.broker.app import create_app
from sandbox.config import Settings, load_settings
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.realm import ADMIN_CLIENT_ID
from sandbox.stack.keycloak import LocalKeycloak
from sandbox.stack.ports import free_port, private_stack_environment
from sandbox.stack.state import ComponentState
from sandbox.stack_secrets import Secrets

from .conftest import audit_verify, wait_for


class DedicatedKeycloak:
    """The stack's Keycloak component in a state directory of its own: started, killed, started again on its data."""

    def __init__(self) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="mcp-sandbox-keycloak-killed-"))
        overrides = {
            key.removeprefix("SANDBOX_").lower(): value
            for key, value in private_stack_environment(self.state_dir).items()
        }
        self.settings: Settings = load_settings(**overrides, tenants=["acme"])
        self.component = LocalKeycloak(self.settings)
        self.entry: ComponentState | None = None

    def start(self, *, keep_data: bool = False) -> None:
        self.component.prepare(lambda step: None)
        # start() begins from a fresh copy of the seeded database; a restart after a crash keeps its data.
        self.entry = super(LocalKeycloak, self.component).start() if keep_data else self.component.start()
        self.component.wait_ready(self.entry)
        if not keep_data:
            self.component.configure(self.entry, lambda step: None)

    def kill(self) -> None:
        assert self.entry is not None and self.entry.process is not None
        os.killpg(self.entry.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.entry is not None:
            self.component.stop(self.entry)
        shutil.rmtree(self.state_dir, ignore_errors=True)  # its own database holds its keys: not left behind


@pytest.fixture
def keycloak() -> Iterator[DedicatedKeycloak]:
    dedicated = DedicatedKeycloak()
    try:
        dedicated.start()
        yield dedicated
    finally:
        dedicated.stop()


def token(settings: Settings, client_id: str, secret: str) -> Token:
    url = f"{settings.issuer('acme')}/protocol/openid-connect/token"
    return asyncio.run(fetch_token(url, ClientSecretCredential(client_id, secret)))


def operator_auth(settings: Settings) -> dict[str, str]:
    operator = operator_token(settings)
    return {"Authorization": f"Bearer {operator}"}


def one_line_503(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 503, response.text
    detail = str(response.json()["detail"])
    assert "\n" not in detail and all(w in detail for w in words), detail
    return detail


@pytest.mark.xdist_group("keycloak-killed")
@pytest.mark.reliability(
    "Faults",
    "Keycloak SIGKILLed mid-provision, mid-rotation and mid-revoke (a Keycloak of its own), then restarted",
    "clear one-line 503s; after restart: leftover client removed, revocation completed, rotation completed on "
    "retry with the old secret kept for its grace; no credential that should be dead works; audit verified",
)
def test_keycloak_killed_mid_operation(keycloak: DedicatedKeycloak, tmp_path: Path, reliability: Any) -> None:
    settings = keycloak.settings.model_copy(
        update={
            "broker_port": free_port(),
            "broker_database_url": f"sqlite:///{tmp_path / 'broker.db'}",
            "broker_housekeeping_interval": 0.5,
        }
    )
    secret = Secrets(settings).get(ADMIN_CLIENT_ID) or ""
    proxy = FlakyKeycloak(settings.keycloak_base_url)
    with serving(proxy.app()) as proxy_url:
        adapter = KeycloakAdapter(proxy_url, ADMIN_CLIENT_ID, secret)
        with serving(create_app(settings, adapter=adapter), port=settings.broker_port) as url:
            http = httpx.Client(base_url=url, timeout=120)
            auth = operator_auth(settings)
            agents = "/tenants/acme/agents"

            def provision(name: str) -> httpx.Response:
                body = {"name": name, "owner": "o", "role": "invoice-writer", "environment": "staging"}
                return http.post(agents, json=body, headers=auth)

            rotor, leaver = (provision(n).json() for n in ("rotor", "leaver"))
            rotor_secret = rotor["credential"]["client_secret"]
            leaver_secret = leaver["credential"]["client_secret"]
            ids = {
                name: asyncio.run(KeycloakAdapter.from_settings(settings).find_client("acme", a["agent"]["client_id"]))
                for name, a in (("rotor", rotor), ("leaver", leaver))
            }
            holds = [
                proxy.hold("GET", r"/service-account-user$"),  # the new client exists by then
                proxy.hold("PUT", rf"/clients/{ids['rotor']}$"),  # the new secret exists by then
                proxy.hold("DELETE", rf"/clients/{ids['leaver']}$"),  # disabled by then
            ]
            answers: dict[str, httpx.Response] = {}
            calls = {
                "provision": lambda: provision("halfway"),
                "rotate": lambda: http.post(
                    f"{agents}/{rotor['agent']['id']}/rotate", json={"grace_seconds": 900}, headers=auth
                ),
                "revoke": lambda: http.post(f"/revoke/{leaver['agent']['id']}", json={"reason": "x"}, headers=auth),
            }
            threads = [threading.Thread(target=lambda n=n, c=c: answers.__setitem__(n, c())) for n, c in calls.items()]
            for thread in threads:
                thread.start()
            for hold in holds:
                assert hold.arrived.wait(120), "an operation did not reach its Keycloak call"
            keycloak.kill()
            for hold in holds:
                hold.release()  # on to a Keycloak that is gone
            for thread in threads:
                thread.join(120)

            one_line_503(answers["provision"], "Keycloak", "recorded as failed")
            one_line_503(answers["rotate"], "Keycloak", "old credential")
            one_line_503(answers["revoke"], "Keycloak", "pending")
            one_line_503(provision("while-down"), "Keycloak")  # nothing new while it is down, and it says so
            listed = {a["name"]: a for a in http.get(agents, headers=auth).json()}
            assert listed["halfway"]["status"] == listed["while-down"]["status"] == "failed"
            assert listed["leaver"]["status"] == "revoking" and listed["rotor"]["status"] == "active"

            keycloak.start(keep_data=True)
            auth.update(operator_auth(settings))  # the first (master realm: 60 s) may have expired meanwhile
            wait_for(
                lambda: http.get(f"{agents}/{leaver['agent']['id']}", headers=auth).json()["status"] == "revoked",
                budget=120,
                what="the revocation completed by housekeeping",
            )
            with pytest.raises(TokenRefused):
                token(settings, leaver["agent"]["client_id"], leaver_secret)
            reliability.add()  # the interrupted revocation

            def leftovers() -> set[str]:
                found = asyncio.run(KeycloakAdapter.from_settings(settings).admin("acme").a_get_clients())
                return {c["clientId"] for c in found if c["clientId"].startswith(("agent-halfway-", "agent-while-"))}

            wait_for(lambda: not leftovers(), budget=60, what="the half-made client removed by housekeeping")
            reliability.add()  # the provision asked for while Keycloak was down: failed, nothing left of it
            token(settings, rotor["agent"]["client_id"], rotor_secret)  # the old secret still works
            rotated = http.post(f"{agents}/{rotor['agent']['id']}/rotate", json={"grace_seconds": 900}, headers=auth)
            assert rotated.status_code == 200, rotated.text
            token(settings, rotor["agent"]["client_id"], rotated.json()["credential"]["client_secret"])
            token(settings, rotor["agent"]["client_id"], rotor_secret)  # and keeps working for the grace
            reliability.add()  # the interrupted rotation
            retried = provision("halfway")
            assert retried.status_code == 201, retried.text
            reliability.add()  # the interrupted provision: its client removed, the name free again

            audit = http.get("/tenants/acme/audit", headers=auth).json()
            revoked = [e for e in audit if e["agent_id"] == leaver["agent"]["id"] and e["action"] == "agent.revoked"]
            assert len(revoked) == 1
            verified = audit_verify(settings, settings.broker_database_url or "")
            assert verified.returncode == 0, verified.stderr
            http.close()
