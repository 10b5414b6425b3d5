"""certify's own test agents: confidential Keycloak clients created through the adapter, one per distinct need.

An agent is asked for by what it must hold (tenant, scopes, audiences, token lifetime) and made once; every
token it gets comes from Keycloak's token endpoint with its own credential (``sandbox.agent.tokens``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sandbox.agent.dpop import DPoPKey
from sandbox.agent.tokens import ClientSecretCredential, TokenEndpointUnavailable, TokenRefused, fetch_token
from sandbox.certify.evidence import KnownTokens
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.idp.hydra import HydraProvider
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.provider import AgentClient, AgentClientSpec, Binding
from sandbox.oidc import discover_async

T = TypeVar("T")


async def _gathered(steps: list[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    return await asyncio.gather(*steps, return_exceptions=True)


def _raise_first(outcomes: list[Any]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


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
    audience: list[str] | None = None  # asked for with audience= (Ory Hydra grants aud only so)

    __test__ = False  # not a pytest test class, whatever its name

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def token(self, *, fresh: bool = False) -> str:
        """An access token from Keycloak (a kept one while it has a minute left, unless ``fresh``)."""
        if fresh or not self.has_token():
            self._runner.run(self.fetch())
        assert self._token is not None
        return self._token

    def has_token(self) -> bool:
        return self._token is not None and time.time() <= self._expires - 60

    async def fetch(self) -> None:
        """Get a new token from Keycloak's token endpoint with the agent's own credential."""
        credential = ClientSecretCredential(self.client_id, self.client.secret or "")
        try:
            issued = await fetch_token(self.token_url, credential, dpop=self.dpop, audience=self.audience)
        except TokenRefused as exc:
            raise SandboxError(
                f"Keycloak refused certify's agent {self.client_id} a token ({exc})", "check `mcp-sandbox status`"
            ) from exc
        except TokenEndpointUnavailable as exc:
            raise SandboxError(
                f"no token for certify's agent {self.client_id}: {exc}", "check `mcp-sandbox status`"
            ) from exc
        self._token, self._expires = self._known.add(issued.access_token), issued.expires_at


class AgentPool:
    """Agents made on demand and reused for the same need; all deleted by :meth:`delete_all`."""

    def __init__(
        self,
        settings: Settings,
        adapter: KeycloakAdapter,
        runner: asyncio.Runner,
        known: KnownTokens,
        *,
        hydra: HydraProvider | None = None,
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.hydra = hydra  # the tenants whose agents are Ory Hydra clients
        self.runner = runner
        self.known = known
        self._agents: dict[AgentNeed, TestAgent] = {}
        self._scopes_made: set[tuple[str, str]] = set()  # (realm, scope) known to exist

    def get(self, need: AgentNeed) -> TestAgent:
        if need not in self._agents:
            self._ensure_scopes([need])
            self._agents[need] = self.runner.run(self._create(need))
        return self._agents[need]

    def prepare(self, needs: list[AgentNeed]) -> None:
        """Make the agents for ``needs`` not made yet, and their first tokens, all at once: Keycloak answers the
        requests side by side, so a check needing many agents waits about as long as for the slowest one."""
        missing = [need for need in dict.fromkeys(needs) if need not in self._agents]
        if missing:
            self._ensure_scopes(missing)
            made = self.runner.run(_gathered([self._create(need) for need in missing]))
            for need, agent in zip(missing, made, strict=True):
                if isinstance(agent, TestAgent):
                    self._agents[need] = agent  # deleted at the end even when another one failed
            _raise_first(made)
        waiting = {id(agent): agent for agent in (self._agents[need] for need in needs) if not agent.has_token()}
        _raise_first(self.runner.run(_gathered([agent.fetch() for agent in waiting.values()])))

    def scopes_exist(self, realm: str, scopes: list[str]) -> None:
        """Note that ``realm`` has client scopes for ``scopes`` already (it was made with them)."""
        self._scopes_made.update((realm, scope) for scope in scopes)

    def _ensure_scopes(self, needs: list[AgentNeed]) -> None:
        # A Hydra client's allowed scopes are only names: nothing to make first.
        made = self._scopes_made | {(n.tenant, scope) for n in needs if self._on_hydra(n.tenant) for scope in n.scopes}
        missing = sorted({(n.tenant, scope) for n in needs for scope in n.scopes} - made)
        for tenant in sorted({tenant for tenant, _ in missing}):
            self.runner.run(self.adapter.ensure_client_scopes(tenant, [s for t, s in missing if t == tenant]))
        self._scopes_made.update(missing)

    async def _create(self, need: AgentNeed) -> TestAgent:
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
        client = await self._idp(need.tenant).create_agent_client(need.tenant, spec)
        token_url = (await discover_async(self._issuer(need.tenant))).token_endpoint
        dpop = DPoPKey.generate() if need.binding == "dpop" else None
        audience = list(need.audiences) if self._on_hydra(need.tenant) else None
        return TestAgent(need, client, token_url, self.runner, self.known, dpop=dpop, audience=audience)

    def _on_hydra(self, tenant: str) -> bool:
        return self.hydra is not None and tenant in self.hydra.tenants

    def _idp(self, tenant: str) -> KeycloakAdapter | HydraProvider:
        return self.hydra if self.hydra is not None and self._on_hydra(tenant) else self.adapter

    def _issuer(self, tenant: str) -> str:
        return (
            self.hydra.tenants[tenant].issuer if self.hydra and self._on_hydra(tenant) else self.settings.issuer(tenant)
        )

    def forget_realm(self, realm: str) -> None:
        """Drop the agents of a realm that is gone (deleted with it)."""
        self._agents = {need: agent for need, agent in self._agents.items() if need.tenant != realm}

    def delete_all(self) -> list[str]:
        """Delete every agent made; the problems met, as text (clean-up goes on past them)."""
        problems = []
        for agent in list(self._agents.values()):
            try:
                self.runner.run(self._idp(agent.need.tenant).delete_client(agent.need.tenant, agent.client.id))
            except Exception as exc:  # clean-up of one agent must not stop the others'
                problems.append(f"agent {agent.client_id}: {exc}")
        self._agents.clear()
        return problems
