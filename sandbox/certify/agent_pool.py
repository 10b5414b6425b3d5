"""certify's own test agents: confidential Keycloak clients created through the adapter, one per distinct need.

An agent is asked for by what it must hold (tenant, scopes, audiences, token lifetime) and made once; every
token it gets comes from Keycloak's token endpoint with its own credential (``sandbox.agent.tokens``).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from sandbox.agent.dpop import DPoPKey
from sandbox.agent.tokens import (
    ClientSecretCredential,
    Token,
    TokenClient,
    TokenEndpointUnavailable,
    TokenRefused,
)
from sandbox.certify.evidence import KnownTokens
from sandbox.certify.loop import LoopThread, tls
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.idp.hydra import HydraProvider
from sandbox.idp.provider import AgentClient, AgentClientSpec, Binding, CertifyingProvider
from sandbox.oidc import discover_async

T = TypeVar("T")


async def _gathered(steps: list[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    return await asyncio.gather(*steps, return_exceptions=True)


def _raise_first(outcomes: list[Any]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def fetch_token(
    token_url: str,
    credential: ClientSecretCredential,
    *,
    dpop: DPoPKey | None = None,
    audience: list[str] | None = None,
) -> Token:
    """One token from the token endpoint, through a client sharing certify's TLS context; ``audience`` is asked
    for where the IdP grants ``aud`` only on request (Ory Hydra)."""
    http = httpx.AsyncClient(timeout=10.0, trust_env=False, verify=tls())
    async with TokenClient(token_url, credential, dpop=dpop, http=http) as client:
        return await client.fetch(None, audience)


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
    _runner: LoopThread = field(repr=False)
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
    """Agents made on demand and reused for the same need; all deleted through :meth:`removals`.

    Checks ask side by side: the first to ask for a need makes its agent, the others wait for that one."""

    def __init__(
        self,
        settings: Settings,
        adapter: CertifyingProvider,
        runner: LoopThread,
        known: KnownTokens,
        *,
        hydra: HydraProvider | None = None,
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.hydra = hydra  # the tenants whose agents are Ory Hydra clients
        self.runner = runner
        self.known = known
        self._agents: dict[AgentNeed, Future[TestAgent]] = {}
        self._scopes_made: set[tuple[str, str]] = set()  # (realm, scope) known to exist
        self._lock = threading.Lock()  # guards the two above, never held while Keycloak answers
        self._scopes_lock = threading.Lock()  # one thread makes a realm's missing client scopes at a time

    def get(self, need: AgentNeed) -> TestAgent:
        return self._obtain([need])[0]

    def prepare(self, needs: list[AgentNeed]) -> None:
        """Make the agents for ``needs`` not made yet, and their first tokens, all at once: Keycloak answers the
        requests side by side, so a check needing many agents waits about as long as for the slowest one."""
        agents = self._obtain(needs)
        waiting = {id(agent): agent for agent in agents if not agent.has_token()}
        _raise_first(self.runner.run(_gathered([agent.fetch() for agent in waiting.values()])))

    def _obtain(self, needs: list[AgentNeed]) -> list[TestAgent]:
        """The agents for ``needs``: those not asked for yet made here, side by side; the others as made."""
        mine: list[AgentNeed] = []
        with self._lock:
            for need in dict.fromkeys(needs):
                if need not in self._agents:
                    self._agents[need] = Future()
                    mine.append(need)
            promised = [self._agents[need] for need in needs]
        if mine:
            try:
                self._ensure_scopes(mine)
                made: list[TestAgent | BaseException] = self.runner.run(_gathered([self._create(n) for n in mine]))
            except BaseException as exc:
                made = [exc] * len(mine)
            for need, agent in zip(mine, made, strict=True):
                if isinstance(agent, TestAgent):
                    self._agents[need].set_result(agent)  # deleted at the end even when another one failed
                else:
                    self._agents[need].set_exception(agent)
            _raise_first(made)
        return [future.result() for future in promised]

    def scopes_exist(self, realm: str, scopes: list[str]) -> None:
        """Note that ``realm`` has client scopes for ``scopes`` already (it was made with them)."""
        with self._lock:
            self._scopes_made.update((realm, scope) for scope in scopes)

    def _ensure_scopes(self, needs: list[AgentNeed]) -> None:
        with self._scopes_lock:
            with self._lock:
                # A Hydra client's allowed scopes are only names: nothing to make first.
                made = self._scopes_made | {
                    (n.tenant, scope) for n in needs if self._on_hydra(n.tenant) for scope in n.scopes
                }
                missing = sorted({(n.tenant, scope) for n in needs for scope in n.scopes} - made)
            for tenant in sorted({tenant for tenant, _ in missing}):
                self.runner.run(self.adapter.ensure_scopes(tenant, [s for t, s in missing if t == tenant]))
            with self._lock:
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

    def _idp(self, tenant: str) -> CertifyingProvider:
        return self.hydra if self.hydra is not None and self._on_hydra(tenant) else self.adapter

    def _issuer(self, tenant: str) -> str:
        return (
            self.hydra.tenants[tenant].issuer if self.hydra and self._on_hydra(tenant) else self.settings.issuer(tenant)
        )

    def forget_realm(self, realm: str) -> None:
        """Drop the agents of a realm that is gone (deleted with it)."""
        with self._lock:
            self._agents = {need: made for need, made in self._agents.items() if need.tenant != realm}

    def removals(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The deletion of every agent made (what each is, and the step), forgetting them: run them side by side."""
        with self._lock:
            made = [future for future in self._agents.values() if future.done() and future.exception() is None]
            self._agents.clear()
        agents = [future.result() for future in made]
        return [
            (f"agent {a.client_id}", self._idp(a.need.tenant).delete_client(a.need.tenant, a.client.id)) for a in agents
        ]
