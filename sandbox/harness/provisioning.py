"""Agents as the harness makes them for tests: provisioned through the broker, holding their own credential."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import RSAKey

from sandbox.admin.client import BrokerClient
from sandbox.agent.dpop import DPoPKey
from sandbox.agent.tokens import ClientSecretCredential, Credential, PrivateKeyCredential, Token, fetch_token
from sandbox.config import Settings
from sandbox.harness.tenants import Tenant, TenantAdmin
from sandbox.issued import remember_answer


def new_key(kid: str) -> RSAKey:
    """A fresh RSA key for a private_key_jwt agent (the broker gets only its public half)."""
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"}, private=True)
    remember_answer(key.as_dict(private=True))
    return key


def credential_for(issued: dict[str, Any], key: RSAKey | None) -> Credential:
    """The credential an agent holds after the broker issued ``issued`` (and, for a key, kept ``key``)."""
    if key is not None:
        return PrivateKeyCredential(issued["client_id"], key.as_dict(private=True))
    return ClientSecretCredential(issued["client_id"], issued["client_secret"])


@dataclass
class ProvisionedAgent:
    id: str
    client_id: str
    tenant: Tenant
    status: str
    scopes: list[str]
    credential: Credential = field(repr=False)
    settings: Settings | None = field(default=None, repr=False, compare=False)
    admin: TenantAdmin | None = field(default=None, repr=False, compare=False)
    dpop: DPoPKey | None = field(default=None, repr=False, compare=False)  # binding dpop: the key it keeps

    async def token(self) -> Token:
        return await fetch_token(self.tenant.token_url, self.credential, dpop=self.dpop)

    def change_role(self, role: str, environment: str | None = None, reason: str = "") -> None:
        """A new role through the broker; the agent's next token carries its scopes."""
        body = {"role": role, "environment": environment, "reason": reason}
        self.scopes = self._broker("role", body)["scopes"]  # the agent as it is now

    def rotate(self, grace_seconds: int = 0, reason: str = "") -> None:
        """A new credential through the broker (the old one works ``grace_seconds`` more); the agent holds it."""
        key = (
            new_key(f"{self.client_id}-{uuid.uuid4().hex[:6]}")
            if isinstance(self.credential, PrivateKeyCredential)
            else None
        )
        body: dict[str, Any] = {"grace_seconds": grace_seconds, "reason": reason}
        if key is not None:
            body["jwk"] = key.as_dict(private=False)
        answer = self._broker("rotate", body)
        self.credential = credential_for({"client_id": self.client_id, **answer["credential"]}, key)

    def revoke(self, reason: str = "") -> None:
        """Revoke the agent through the broker: its credential and tokens stop working everywhere."""
        self.status = self._broker("revoke", {"reason": reason})["agent"]["status"]

    def _broker(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.settings is None or self.admin is None:
            raise RuntimeError("this agent was not provisioned through the harness (no broker admin to act with)")
        with BrokerClient(self.settings.broker_url, self.admin.token()) as broker:
            answer: dict[str, Any] = broker.post(f"/tenants/{self.tenant.name}/agents/{self.id}/{action}", body)
        return answer


def provision_agent(
    settings: Settings,
    tenant: Tenant,
    admin: TenantAdmin,
    role: str,
    *,
    environment: str = "staging",
    credential: str = "client_secret",
    name: str | None = None,
    binding: str = "bearer",
    **extra: Any,
) -> ProvisionedAgent:
    """Provision an agent through the broker as ``admin``; the credential is kept in memory only.

    ``binding="dpop"``: the agent makes a DPoP key of its own, and its tokens are bound to it.
    """
    name = name or f"agent-{uuid.uuid4().hex[:6]}"
    key = new_key(f"{name}-1") if credential == "private_key_jwt" else None
    body: dict[str, Any] = {
        "name": name,
        "owner": f"{admin.username}@example.test",
        "role": role,
        "environment": environment,
        "credential_type": credential,
        "binding": binding,
        **extra,
    }
    if key is not None:
        body["jwk"] = key.as_dict(private=False)
    with BrokerClient(settings.broker_url, admin.token()) as broker:
        answer = broker.post(f"/tenants/{tenant.name}/agents", body)
    agent = answer["agent"]
    return ProvisionedAgent(
        agent["id"],
        agent["client_id"],
        tenant,
        agent["status"],
        agent["scopes"],
        credential_for(answer["credential"], key),
        settings,
        admin,
        DPoPKey.generate() if binding == "dpop" else None,
    )
