"""Agents certify revokes: provisioned and revoked through the broker, so revocation happens as in production.

The broker disables and deletes the agent in Keycloak and, in ``jwt+events`` mode, pushes its signed event
to the server; so the server under test is registered with the broker (its event endpoint included) for as
long as certify runs, unless it already was. certify acts as the broker's platform operator.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.admin.client import BrokerClient
from sandbox.config import Settings
from sandbox.errors import SandboxError


@dataclass(frozen=True)
class RevocableAgent:
    id: str
    tenant: str
    client_id: str
    secret: str = field(repr=False)
    token_endpoint: str


class BrokerAgents:
    def __init__(self, settings: Settings, operator_token: Callable[[], str]) -> None:
        self.settings = settings
        self._operator_token = operator_token
        self._registered: str | None = None  # the server URL certify registered (and unregisters)
        self._live: list[RevocableAgent] = []

    def _broker(self) -> BrokerClient:
        return BrokerClient(self.settings.broker_url, self._operator_token())  # operator tokens are short-lived

    def ensure_registered(self, url: str, events_url: str | None) -> None:
        with self._broker() as broker:
            servers = {s["url"]: s.get("events_url") for s in broker.get("/resource-servers")}
            if url in servers and (events_url is None or servers[url] == events_url):
                return
            broker.post("/resource-servers", {"url": url, "events_url": events_url})
        if url not in servers:
            self._registered = url

    def role(self, role: str | None, environment: str | None) -> tuple[str, str]:
        """The role and environment to provision with: the ones given, else the first needing no MFA or approval."""
        with self._broker() as broker:
            policy: dict[str, Any] = broker.get("/policy")
        if role is not None:
            if role not in policy["roles"]:
                raise SandboxError(
                    f"the broker's policy has no role {role!r} (revocation.role in the manifest)",
                    f"use one of: {', '.join(policy['roles'])}",
                )
            environments = list(policy["roles"][role]["environments"])
            return role, environment or environments[0]
        mfa = set(policy.get("mfa_environments", []))
        for name, spec in policy["roles"].items():
            for env in spec["environments"]:
                unattended = env not in mfa and env not in spec.get("approval_required", [])
                if unattended and "client_secret" in spec.get("credential_types", ["client_secret"]):
                    return name, env
        raise SandboxError(
            "the broker's policy has no role an agent can get without MFA or approval",
            "name one with revocation.role and revocation.environment in the manifest",
        )

    def provision(self, tenant: str, server: str, role: str, environment: str, lifetime: int | None) -> RevocableAgent:
        body: dict[str, Any] = {
            "name": f"certify-{uuid.uuid4().hex[:10]}",
            "owner": "mcp-sandbox certify",
            "role": role,
            "environment": environment,
            "servers": [server],
            "metadata": {"purpose": "mcp-sandbox certify: revocation check"},
        }
        if lifetime is not None:
            body["token_lifetime"] = lifetime
        with self._broker() as broker:
            provisioned = broker.post(f"/tenants/{tenant}/agents", body)
        credential = provisioned["credential"]
        agent = RevocableAgent(
            provisioned["agent"]["id"],
            tenant,
            credential["client_id"],
            credential["client_secret"],
            credential["token_endpoint"],
        )
        self._live.append(agent)
        return agent

    def revoke(self, agent: RevocableAgent, reason: str) -> dict[str, Any]:
        with self._broker() as broker:
            path = f"/tenants/{agent.tenant}/agents/{agent.id}/revoke"
            answer: dict[str, Any] = broker.post(path, {"reason": reason})
        self._live.remove(agent)
        return answer

    def close(self) -> list[str]:
        """Revoke what is still live and unregister the server if certify registered it; problems as text."""
        problems = []
        for agent in list(self._live):
            try:
                self.revoke(agent, "mcp-sandbox certify: clean-up")
            except SandboxError as exc:
                problems.append(f"agent {agent.client_id}: {exc}")
        if self._registered is not None:
            try:
                with self._broker() as broker:
                    broker.request("DELETE", "/resource-servers", params={"url": self._registered})
            except SandboxError as exc:
                problems.append(f"resource server {self._registered}: {exc}")
            self._registered = None
        return problems
