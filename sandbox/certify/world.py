"""Everything certify sets up in the sandbox for one server under test, made on first use and removed at the end.

- agents in the tenant realms (through the Keycloak adapter), each with exactly the scopes a check needs and
  the server's canonical URL as audience;
- a *trusted signer*: an RSA key certify holds, published (passive) in the home tenant's JWKS, so certify can
  issue tokens the trusted issuer's key signed, with any claims (expired, not yet valid, another audience);
- an *outsider* key nobody publishes, and a *foreign realm*: a real Keycloak issuer the server must not trust;
- agents revoked through the broker, and the upstream watch (:mod:`.upstream`) when the manifest asks for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import httpx

from sandbox.admin.client import BrokerClient
from sandbox.admin.operator import operator_token
from sandbox.agent.mcp_http import post, rpc_message
from sandbox.certify.agent_pool import AgentNeed, AgentPool, TestAgent
from sandbox.certify.evidence import KnownTokens
from sandbox.certify.forge import Claims, Signer
from sandbox.certify.loop import LoopThread
from sandbox.certify.manifest import Manifest
from sandbox.certify.revision import LEGACY, REVISIONS, STATELESS, Revision, Wire, supported_versions
from sandbox.certify.revocable import BrokerAgents
from sandbox.certify.upstream import UpstreamWatch, watching
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.idp import CertifyingProvider, identity_provider
from sandbox.idp.capabilities import HYDRA, CapabilityName
from sandbox.idp.hydra import HydraProvider, HydraTenant
from sandbox.idp.provider import Binding
from sandbox.idp.realm import load_realm_template
from sandbox.loopback import is_loopback_url

#: Why a server off loopback is refused: the sandbox never sends traffic anywhere else.
OFF_LOOPBACK = "the sandbox only talks to 127.0.0.0/8 or ::1: run the server under test on loopback"
#: The audience of tokens issued for some other server (nothing listens there; it is only a name).
OTHER_AUDIENCE = "http://127.0.0.1:9/mcp"

log = logging.getLogger("sandbox.certify")


class World:
    def __init__(self, settings: Settings, manifest: Manifest, url: str) -> None:
        if not is_loopback_url(url):
            raise SandboxError(f"--url {url} is not an http(s) URL on loopback", OFF_LOOPBACK)
        self.settings = settings
        self.manifest = manifest
        self.url = url
        self.home = manifest.tenants[0]
        self.other = manifest.tenants[1] if len(manifest.tenants) > 1 else None
        self.known = KnownTokens()
        began = time.monotonic()
        self.runner = LoopThread()
        self.adapter = identity_provider(settings)  # refuses at once when there is no sandbox
        self.hydra = self._hydra_tenants()  # the manifest's tenants whose agents are on an Ory Hydra
        self.agents = AgentPool(settings, self.adapter, self.runner, self.known, hydra=self.hydra)
        self.outsider = Signer()
        self.trusted_signer_accepted: bool | None = None  # learnt by the first check that needs it
        self.run_started = time.time()  # the runner sets it again for each run
        self.wire = Wire(LEGACY)  # the runner sets the run's revision
        self._trusted: Signer | None = None
        self._trusted_component: str | None = None
        self._rolled: dict[str, str] = {}  # kid -> component of keys published for jwks-rollover, until withdrawn
        self._rolled_lock = threading.Lock()  # jwks-rollover runs beside the other checks
        self._withdrawable: Signer | None = None  # published before the run's first request, for jwks-rollover
        self._foreign_realm: str | None = None
        self._foreign_made: Future[None] | None = None  # the foreign realm, made in the background
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="certify-foreign-realm")
        self._broker: BrokerAgents | None = None
        self._exits = contextlib.ExitStack()
        self.upstream: UpstreamWatch | None = None
        try:
            self.trusted_signer()  # published first: a server fetching the issuer's keys from now on sees it at once
            if manifest.upstream is not None:
                self.upstream = self._exits.enter_context(
                    watching(manifest.upstream.port, manifest.upstream.forward_to, settings.host)
                )
        except BaseException:
            self.close()
            raise
        log.info("certify world ready", extra={"server": url, "seconds": round(time.monotonic() - began, 3)})

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Agents.
    def agent(
        self,
        scopes: list[str] | set[str] | frozenset[str],
        *,
        tenant: str | None = None,
        audiences: tuple[str, ...] | None = None,
        label: str = "",
        binding: Binding = "bearer",
    ) -> TestAgent:
        """An agent holding exactly ``scopes`` (plus the IdP's base scope), for this server unless told otherwise;
        ``binding`` dpop: its tokens are bound to a DPoP key it holds."""
        audiences = (self.url,) if audiences is None else audiences
        need = AgentNeed(tenant or self.home, frozenset(scopes), audiences, label=label, binding=binding)
        return self.agents.get(need)

    def prepare_agents(self, scope_sets: list[frozenset[str]], *, tenant: str | None = None) -> None:
        """Make the agents holding each of ``scope_sets`` (for this server), and their tokens, side by side."""
        self.agents.prepare([AgentNeed(tenant or self.home, frozenset(scopes), (self.url,)) for scopes in scope_sets])

    def full_agent(self, tenant: str | None = None) -> TestAgent:
        """An agent with every scope the manifest names: it may call every tool."""
        return self.agent(self.manifest.scopes(), tenant=tenant)

    # The revision.
    def newest_revision(self) -> Revision:
        """The newest revision the server accepts, asked with a valid token: ``server/discover`` as 2026-07-28
        sends it; a server that does not serve it speaks 2025-11-25."""
        request = Wire(STATELESS).request("server/discover")
        with httpx.Client(timeout=30, trust_env=False) as client:
            token = self.full_agent().token()
            answer = post(self.url, request.body, token=token, headers=request.headers, client=client)
        found = rpc_message(answer) if answer.status_code == 200 else None
        result = found.get("result") if found else None
        offered = supported_versions(result) if isinstance(result, dict) else []
        return next((revision for revision in reversed(REVISIONS) if revision in offered), LEGACY)

    # The agents' IdPs.
    def _hydra_tenants(self) -> HydraProvider | None:
        """The manifest's tenants whose agents the broker keeps on an Ory Hydra of the stack (its own, or one it
        lent the tenant), found by the agents' issuer the broker lists; None when every one is on Keycloak."""
        if not self.settings.hydras:
            return None
        with BrokerClient(self.settings.broker_url, operator_token(self.settings)) as broker:
            listed = {t["tenant"]: t for t in broker.get("/tenants")}
        by_issuer = {address.issuer: address for address in self.settings.hydras}
        tenants = {
            name: HydraTenant(address.issuer, address.admin_url)
            for name in self.manifest.tenants
            if listed.get(name, {}).get("idp") == "hydra"
            and (address := by_issuer.get(listed[name]["agents_issuer"])) is not None
        }
        return HydraProvider(tenants, base_scopes=self.settings.mcp_base_scopes) if tenants else None

    def on_hydra(self, tenant: str | None = None) -> bool:
        return self.hydra is not None and (tenant or self.home) in self.hydra.tenants

    def unsupported(self, capability: CapabilityName, tenant: str | None = None) -> str | None:
        """``not supported by hydra: <reason>`` when the tenant's agents' IdP lacks ``capability``, else None."""
        return HYDRA.unsupported_reason(capability) if self.on_hydra(tenant) else None

    def token_audience(self, url: str, tenant: str | None = None) -> list[str] | None:
        """What a token request names to get a token for ``url``: Hydra grants ``aud`` only on ``audience=``."""
        return [url] if self.on_hydra(tenant) else None

    def _keys(self) -> CertifyingProvider:
        """Where the home issuer's published keys are kept: its realm, or its Hydra's passive key set."""
        return self.hydra if self.hydra is not None and self.on_hydra() else self.adapter

    # Keys and issuers.
    def issuer(self, tenant: str | None = None) -> str:
        tenant = tenant or self.home
        return (
            self.hydra.tenants[tenant].issuer if self.hydra and self.on_hydra(tenant) else self.settings.issuer(tenant)
        )

    def trusted_signer(self) -> Signer:
        """A key the home issuer publishes (passively) and certify holds."""
        if self._trusted is None:
            signer = Signer()
            name = f"mcp-sandbox certify {uuid.uuid4().hex[:8]}"
            published = self.runner.run(self._keys().add_signing_key(self.home, signer.private_pem(), name=name))
            signer.kid = published.kid
            self._trusted, self._trusted_component = signer, published.component_id
        return self._trusted

    def publish_key(self) -> Signer:
        """A new key certify holds, published (passively) in the home issuer's JWKS now: a key rollover as a
        server sees it, without touching the key the realm signs its own tokens with."""
        signer = Signer()
        name = f"mcp-sandbox certify rollover {uuid.uuid4().hex[:8]}"
        published = self.runner.run(self._keys().add_signing_key(self.home, signer.private_pem(), name=name))
        signer.kid = published.kid
        with self._rolled_lock:
            self._rolled[published.kid] = published.component_id
        return signer

    def publish_withdrawable_key(self) -> None:
        """Publish, before the run's first request, the key jwks-rollover withdraws (:meth:`withdrawable_key`): a
        key the server can have fetched by the time the check starts, so its withdrawal is examined while the
        server's cache learns the check's newly published key, not after."""
        if self._withdrawable is None:
            self._withdrawable = self.publish_key()

    def withdrawable_key(self) -> Signer:
        """The key :meth:`publish_withdrawable_key` published (published now if it was not), once."""
        self.publish_withdrawable_key()
        signer, self._withdrawable = self._withdrawable, None
        assert signer is not None
        return signer

    def withdraw_key(self, signer: Signer) -> None:
        """Take a key :meth:`publish_key` published out of the issuer's JWKS."""
        with self._rolled_lock:
            component = self._rolled.pop(signer.kid)
        self.runner.run(self._keys().remove_signing_key(self.home, component))

    def forge(self, claims: Claims) -> str:
        """``claims`` signed by the trusted signer: a token the home issuer's published key verifies."""
        return self.known.add(self.trusted_signer().sign(claims))

    def unusable_token(self, claims: Claims) -> str:
        """A well-formed token every verifier must refuse, however lax in one respect: signed by a key nobody
        publishes (unknown ``kid``), expired, and for another audience."""
        now = int(time.time())
        dead = {**claims, "iat": now - 900, "exp": now - 600, "aud": OTHER_AUDIENCE, "jti": str(uuid.uuid4())}
        return self.known.add(self.outsider.sign(dead))

    def published_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The issuer's JWKS (from its OpenID configuration)."""
        issuer = self.issuer(tenant)
        with httpx.Client(timeout=15, trust_env=False) as client:
            configuration = client.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration").json()
            keys: list[dict[str, Any]] = client.get(configuration["jwks_uri"]).json()["keys"]
        return keys

    def begin_foreign_realm(self) -> None:
        """Start making the foreign realm: Keycloak takes seconds to make a realm, so it is made in the background
        (its own thread and admin client) while the checks before the one that needs it run."""
        if self._foreign_made is None:
            realm = f"certify-foreign-{uuid.uuid4().hex[:8]}"
            self._foreign_realm = realm  # removed at the end, whatever became of its making
            self._foreign_made = self._background.submit(self._make_foreign_realm, realm)

    def _make_foreign_realm(self, realm: str) -> None:
        adapter = identity_provider(self.settings)
        template = load_realm_template(self.settings.fixtures_dir)
        scopes = self.manifest.scopes()
        asyncio.run(adapter.create_tenant_realm(realm, template, scopes=scopes, resource_servers={}))

    def foreign_agent(self) -> TestAgent:
        """An agent of a realm the server must not trust, otherwise perfect (audience, scopes)."""
        self.begin_foreign_realm()
        assert self._foreign_made is not None and self._foreign_realm is not None
        self._foreign_made.result()  # its error, if the making failed
        self.agents.scopes_exist(self._foreign_realm, self.manifest.scopes())
        return self.agent(self.manifest.scopes(), tenant=self._foreign_realm)

    # The broker.
    def broker(self) -> BrokerAgents:
        if self._broker is None:
            self._broker = BrokerAgents(self.settings, lambda: operator_token(self.settings))
        return self._broker

    def close(self) -> list[str]:
        """Remove everything certify made, side by side; the problems met (clean-up continues past each)."""
        began = time.monotonic()
        problems = self._broker.close() if self._broker is not None else []
        if self._foreign_made is not None:
            wait([self._foreign_made])  # a realm still being made is removed once it is there
        self._background.shutdown()
        if self._foreign_realm is not None:
            self.agents.forget_realm(self._foreign_realm)  # its agents go with it
        steps = self.agents.removals()
        with self._rolled_lock:
            steps += [
                (f"the rollover key {kid}", self._keys().remove_signing_key(self.home, component))
                for kid, component in self._rolled.items()
            ]
            self._rolled.clear()
        self._withdrawable = None
        if self._trusted_component is not None:
            steps.append(("the published key", self._keys().remove_signing_key(self.home, self._trusted_component)))
            self._trusted_component = None
        if self._foreign_realm is not None:
            steps.append(("the foreign realm", self._delete_realm(self._foreign_realm)))
            self._foreign_realm = None
        outcomes = self.runner.run(_gathered([step for _, step in steps])) if steps else []
        problems += [
            f"{what}: {outcome}"
            for (what, _), outcome in zip(steps, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        self._exits.close()
        self.runner.close()
        log.info("certify world removed", extra={"server": self.url, "seconds": round(time.monotonic() - began, 3)})
        return problems

    async def _delete_realm(self, realm: str) -> None:
        if await self.adapter.realm_exists(realm):
            await self.adapter.delete_realm(realm)


async def _gathered(steps: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Each step's result or exception: every clean-up step runs, whatever another one met."""
    return list(await asyncio.gather(*steps, return_exceptions=True))
