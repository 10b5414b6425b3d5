"""What a running scenario holds: its fresh tenants and admins, its agents and their credentials, its servers.

Everything goes through public interfaces: the broker's HTTP API, Keycloak's token endpoint and login form,
and MCP over Streamable HTTP. Setup makes fresh tenants; teardown removes them and anything else it started.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faker import Faker

from sandbox.admin.client import BrokerClient
from sandbox.admin.operator import operator_token
from sandbox.agent.dpop import DPoPKey
from sandbox.agent.tokens import ClientSecretCredential, Credential, Token, TokenClient
from sandbox.broker.policy import NetworkZones, Policy
from sandbox.config import DEFAULT_IDP, IdpName, Settings
from sandbox.harness.tenants import Tenant, TenantAdmin, create_tenant, delete_tenant
from sandbox.idp.capabilities import CapabilityName
from sandbox.loopback_ca import CA_FILE, IssuedCertificate, LoopbackCA
from sandbox.scenarios.calls import McpCaller
from sandbox.scenarios.library import StepFailed
from sandbox.scenarios.model import AgentSpec, Header
from sandbox.scenarios.results import LoadSeries
from sandbox.stack.ports import free_port
from sandbox.stack.readiness import last_lines, wait_for_http
from sandbox.toolmap import ToolMap


@dataclass
class AgentHandle:
    """One agent of the scenario: what the broker said about it, and the credentials the agent holds."""

    name: str
    spec: AgentSpec
    tenant: Tenant
    id: str | None = None
    client_id: str | None = None
    status: str | None = None
    credential: Credential | None = field(default=None, repr=False)
    previous: Credential | None = field(default=None, repr=False)
    token: Token | None = field(default=None, repr=False)
    revoked_at: float | None = None  # monotonic time the revoke call returned (or the broker suspended it)
    dpop: DPoPKey | None = field(default=None, repr=False)  # binding dpop: the key its tokens are bound to
    certificate: IssuedCertificate | None = field(default=None, repr=False)  # binding mtls: its client certificate
    https_token_url: str | None = None  # binding mtls: its IdP's token endpoint on the HTTPS port
    source: str | None = None  # the address of its network zone (spec.zone) its requests come from
    audiences: list[str] = field(default_factory=list)  # the MCP servers its tokens are for
    reported_calls: int = 0  # tool calls a stack server answered, which it reports to the broker

    def token_client(self, credential: Credential, source: str | None = None, *, audience: bool = True) -> TokenClient:
        """A token client of the agent's IdP, with its DPoP key or client certificate (then on the IdP's HTTPS
        port), from ``source`` (else its own zone); on Hydra it asks for the agent's audience (granted on request)
        unless ``audience`` is False."""
        return TokenClient(
            self.https_token_url or self.tenant.token_url,
            credential,
            dpop=self.dpop,
            certificate=self.certificate,
            source=source or self.source,
            audience=self.audiences if audience and self.tenant.idp == "hydra" else None,
        )

    def require_provisioned(self) -> str:
        if self.id is None:
            raise StepFailed(f"agent {self.name!r} provisioned first", "it was never provisioned")
        return self.id

    def require_credential(self, which: str = "current") -> Credential:
        if which == "wrong":
            return ClientSecretCredential(self.client_id or self.name, "not-the-agent-secret")
        credential = self.previous if which == "previous" else self.credential
        if credential is None:
            raise StepFailed(f"agent {self.name!r} to hold a {which} credential", "it holds none")
        return credential

    async def fetch_token(self, which: str = "current", source: str | None = None) -> Token:
        """A new token with the current (or the previous) credential; kept as the agent's latest token.

        From ``source`` (an address of a network zone) when given, else from the agent's own zone."""
        async with self.token_client(self.require_credential(which), source) as client:
            token = await client.fetch()
        if which == "current":
            self.token = token
        return token

    async def current_token(self) -> Token:
        """The agent's latest token while it is fresh, else a new one."""
        if self.token is None or not self.token.fresh():
            return await self.fetch_token()
        return self.token


@dataclass
class RunningServer:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


class RunContext:
    def __init__(self, settings: Settings, header: Header, label: str, idp: IdpName = DEFAULT_IDP) -> None:
        self.settings = settings
        self.idp = idp  # where the scenario's tenants keep their agents
        self.exercised: list[CapabilityName] = []  # what the running step needs of the IdP (see library.require)
        self.header = header
        self.label = label
        self.faker = Faker()
        self.faker.seed_instance(header.seed)
        self.tenants: dict[str, Tenant] = {}
        self.agents: dict[str, AgentHandle] = {}
        self.extra_servers: dict[str, RunningServer] = {}
        self.mcp = McpCaller(ca_file=settings.tls_dir / CA_FILE)
        self.load: list[LoadSeries] = []
        self.values: dict[str, Any] = {}  # what steps learn and later steps use (e.g. a tenant's services)
        self.users: dict[str, dict[str, Any]] = {}  # name -> what the broker issued (password shown once)
        self._zones: NetworkZones | None = None

    # Set-up and tear-down.
    async def setup(self) -> None:
        for key, spec in self.header.tenants.items():
            admins = {name: admin.mfa for name, admin in spec.admins.items()}
            label = f"sc-{self.label}"
            self.tenants[key] = await asyncio.to_thread(create_tenant, self.settings, admins, label, self.idp)
        for key, spec in self.header.tenants.items():
            tenant = self.tenants[key]
            for user, user_spec in spec.users.items():
                body = {"username": user, "scopes": user_spec.scopes}
                self.users[user] = await self.broker("POST", f"/tenants/{tenant.name}/users", by=None, tenant=tenant,
                                                     body=body)  # fmt: skip
        for name, spec in self.header.agents.items():
            self.agents[name] = AgentHandle(
                name,
                spec,
                self.tenants[self.header.tenant_of_agent(name)],
                dpop=DPoPKey.generate() if spec.binding == "dpop" else None,  # the agent's own; never sent anywhere
            )
            if spec.binding == "mtls":  # a certificate of the loopback CA, its key 0600 in the stack's state
                agent = self.agents[name]
                agent.certificate = LoopbackCA(self.settings.tls_dir).issue(f"{self.label}-{name}", client=True)
                agent.https_token_url = self.settings.keycloak_https_endpoint(agent.tenant.token_url)
            self.agents[name].source = self.zone_address(spec.zone) if spec.zone else None
        for name, server in self.header.servers.items():
            self.extra_servers[name] = await asyncio.to_thread(self._start_server, name, server.trusts, server.mode)

    async def teardown(self) -> list[str]:
        """Remove what setup made; return problems instead of raising, so one failure hides no other."""
        problems: list[str] = []
        self.mcp.close()
        for server in self.extra_servers.values():
            try:
                await asyncio.to_thread(self._stop_server, server)
            except Exception as exc:
                problems.append(f"stopping server {server.name}: {exc}")
        for tenant in self.tenants.values():
            try:
                await asyncio.to_thread(delete_tenant, self.settings, tenant.name)
            except Exception as exc:
                problems.append(f"removing tenant {tenant.name}: {exc}")
        return problems

    def _start_server(self, name: str, trusts: list[str], mode: str) -> RunningServer:
        """A reference MCP server of this scenario only, trusting only the tenants named, known to the broker."""
        port = free_port()
        log = self.settings.log_dir / f"scenario-{self.label}-{name}.log"
        command = [sys.executable, "-m", "sandbox.cli", "mcp-server", "--port", str(port), "--mode", mode]
        for tenant in trusts:
            command += ["--issuer", f"{self.tenants[tenant].name}={self.tenants[tenant].agents_issuer}"]
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        origin = f"http://{self.settings.host}:{port}"
        try:
            wait_for_http(
                f"scenario server {name}", f"{origin}/health", timeout=60, alive=lambda: process.poll() is None, log=log
            )
        except Exception:
            process.kill()
            raise
        server = RunningServer(name, f"{origin}/mcp", process, log)
        with BrokerClient(self.settings.broker_url, operator_token(self.settings)) as broker:
            broker.post("/resource-servers", {"url": server.url, "events_url": None})
        return server

    def _stop_server(self, server: RunningServer) -> None:
        with BrokerClient(self.settings.broker_url, operator_token(self.settings)) as broker:
            broker.request("DELETE", "/resource-servers", params={"url": server.url})
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        if server.process.returncode not in (0, -15):
            raise RuntimeError(f"exited {server.process.returncode}: {last_lines(server.log)}")

    # What steps use.
    def admin(
        self, name: str | None, agent: AgentHandle | None = None, tenant: Tenant | None = None
    ) -> tuple[Tenant, TenantAdmin]:
        """The admin named, or the first admin of the tenant given, of the agent's tenant, or of the first tenant."""
        if name is None:
            home = tenant or (agent.tenant if agent else None)
            key = next(k for k, t in self.tenants.items() if home is None or t is home)
            name = next(iter(self.header.tenants[key].admins))
        found = self.tenants[self.header.tenant_of_admin(name)]
        return found, found.admins[name]

    async def broker(self, method: str, path: str, *, by: str | None, agent: AgentHandle | None = None,
                     tenant: Tenant | None = None, body: dict[str, Any] | None = None,
                     params: dict[str, Any] | None = None) -> Any:  # fmt: skip
        """Call the broker's API as an admin (their real login token)."""
        _, admin = self.admin(by, agent, tenant)
        token = await admin.login()

        def call() -> Any:
            with BrokerClient(self.settings.broker_url, token) as client:
                return client.request(method, path, json=body, params=params)

        return await asyncio.to_thread(call)

    def agent_servers(self, agent: AgentHandle, name: str | None) -> dict[str, str]:
        """Where ``agent`` calls: :meth:`servers`, on their TLS listeners when it holds a client certificate."""
        if agent.certificate is None:
            return self.servers(name)
        names = [name] if name else list(self.header.revocation_modes)
        if any(each in self.extra_servers for each in names):
            raise StepFailed(
                f"agent {agent.name!r} (binding mtls) to call a server with a TLS listener",
                "a scenario's own servers have none; call the stack's servers (a revocation mode)",
            )
        return {each: self.settings.mcp_server(each).tls_url for each in names}

    def servers(self, name: str | None) -> dict[str, str]:
        """Server name -> URL: the one named (a revocation mode or a scenario server), else the scenario's modes."""
        names = [name] if name else list(self.header.revocation_modes)
        found: dict[str, str] = {}
        for each in names:
            if each in self.extra_servers:
                found[each] = self.extra_servers[each].url
            else:
                found[each] = self.settings.mcp_server(each).url
        return found

    def zone_address(self, zone: str) -> str:
        """The source address of a network zone of the stack's policy (the pre-check made sure it exists)."""
        if self._zones is None:
            self._zones = Policy.load(self.settings.policy_file, ToolMap.load(self.settings.tools_file)).zones
        return self._zones.addresses[zone]

    def remember(self, key: str, value: Any) -> None:
        self.values[key] = value
