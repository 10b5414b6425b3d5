"""certify's own test agents: confidential Keycloak clients created through the adapter, one per distinct need.

An agent is asked for by what it must hold (tenant, scopes, audiences, token lifetime) and made once; every
token it gets comes from Keycloak's token endpoint with its own credential (``sandbox.agent.tokens``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from sandbox.agent.dpop import DPoPKey
from sandbox.agent.tokens import ClientSecretCredential, TokenEndpointUnavailable, TokenRefused, fetch_token
from sandbox.certify.evidence import KnownTokens
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.provider import AgentClient, AgentClientSpec, Binding
from sandbox.oidc import discover

#: Client attribute marking certify's agents, so leftovers of an interrupted run can be told apart.
CERTIFY_ATTRIBUTE = "mcp-sandbox.certify"


@dataclass(frozen=True)
class AgentNeed:
    tenant: str
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    lifetime: int = 300
    label: str = ""  # tells apart two agents with the same needs (an owner and an intruder)
    binding: Binding = "bearer"  # dpop: its tokens are bound to a DPoP key it holds


@dataclass
class TestAgent:
    need: AgentNeed
    client: AgentClient
    token_url: str
    _runner: asyncio.Runner = field(repr=False)
    _known: KnownTokens = field(repr=False)
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0
    dpop: DPoPKey | None = field(default=None, repr=False)  # the key its tokens are bound to (binding dpop)

    __test__ = False  # not a pytest test class, whatever its name

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def token(self, *, fresh: bool = False) -> str:
        """An access token from Keycloak (a kept one while it has a minute left, unless ``fresh``)."""
        if fresh or self._token is None or time.time() > self._expires - 60:
            credential = ClientSecretCredential(self.client_id, self.client.secret or "")
            try:
                issued = self._runner.run(fetch_token(self.token_url, credential, dpop=self.dpop))
            except TokenRefused as exc:
                raise SandboxError(
                    f"Keycloak refused certify's agent {self.client_id} a token ({exc})", "check `mcp-sandbox status`"
                ) from exc
            except TokenEndpointUnavailable as exc:
                raise SandboxError(
                    f"no token for certify's agent {self.client_id}: {exc}", "check `mcp-sandbox status`"
                ) from exc
            self._token, self._expires = self._known.add(issued.access_token), issued.expires_at
        return self._token


class AgentPool:
    """Agents made on demand and reused for the same need; all deleted by :meth:`delete_all`."""

    def __init__(
        self, settings: Settings, adapter: KeycloakAdapter, runner: asyncio.Runner, known: KnownTokens
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.runner = runner
        self.known = known
        self._agents: dict[AgentNeed, TestAgent] = {}
        self._scopes_made: set[tuple[str, str]] = set()  # (realm, scope) known to exist

    def get(self, need: AgentNeed) -> TestAgent:
        if need not in self._agents:
            self._agents[need] = self._create(need)
        return self._agents[need]

    def _create(self, need: AgentNeed) -> TestAgent:
        missing = sorted(scope for scope in need.scopes if (need.tenant, scope) not in self._scopes_made)
        if missing:
            self.runner.run(self.adapter.ensure_client_scopes(need.tenant, missing))
            self._scopes_made.update((need.tenant, scope) for scope in missing)
        client_id = f"certify-{uuid.uuid4().hex[:10]}"
        spec = AgentClientSpec(
            client_id=client_id,
            name=f"certify {need.label or 'test agent'} ({', '.join(sorted(need.scopes)) or 'no tool scope'})",
            scopes=sorted(need.scopes),
            audiences=list(need.audiences),
            token_lifetime=need.lifetime,
            attributes={CERTIFY_ATTRIBUTE: "true"},
            binding=need.binding,
        )
        client = self.runner.run(self.adapter.create_agent_client(need.tenant, spec))
        token_url = discover(self.settings.issuer(need.tenant)).token_endpoint
        dpop = DPoPKey.generate() if need.binding == "dpop" else None
        return TestAgent(need, client, token_url, self.runner, self.known, dpop=dpop)

    def forget_realm(self, realm: str) -> None:
        """Drop the agents of a realm that is gone (deleted with it)."""
        self._agents = {need: agent for need, agent in self._agents.items() if need.tenant != realm}

    def delete_all(self) -> list[str]:
        """Delete every agent made; the problems met, as text (clean-up goes on past them)."""
        problems = []
        for agent in list(self._agents.values()):
            try:
                self.runner.run(self.adapter.delete_client(agent.need.tenant, agent.client.id))
            except Exception as exc:  # clean-up of one agent must not stop the others'
                problems.append(f"agent {agent.client_id}: {exc}")
        self._agents.clear()
        return problems
