"""What one server instance needs to know, built from the settings: as the stack's server, or standalone."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from mcp.server.auth.routes import build_resource_metadata_url
from pydantic import AnyHttpUrl

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.loopback import require_loopback
from sandbox.modes import MODES, ModeName
from sandbox.stack_secrets import RESOURCE_SERVER_SECRET, USAGE_INGEST_SECRET, Secrets


@dataclass(frozen=True)
class ServerOptions:
    canonical_url: str
    host: str
    port: int
    mode: ModeName
    issuers: tuple[str, ...]
    broker_url: str | None
    events_signer_jwks_url: str | None  # an override of the transmitter's own jwks_uri
    transmitter_url: str | None  # jwt+events: the SSF transmitter (its issuer) this server receives from
    revocation_journal: Path | None  # jwt+events: where the revocation list is kept across restarts
    introspection_secret: str | None
    usage_secret: str | None
    tools_file: Path
    algorithms: tuple[str, ...]
    base_scopes: tuple[str, ...]
    leeway: int
    max_token_lifetime: int
    introspection_cache_ttl: float
    jwks_refetch_interval: float
    trust_refetch_interval: float
    usage_flush_interval: float
    denied_call_limit: int = 20  # refused tool calls per principal in a window before its tool calls get 429
    denied_call_window: float = 60.0
    jwks_max_age: float = 10.0  # seconds fetched keys are kept: how long a key the issuer withdrew still verifies
    request_state_ttl: float = 5.0  # seconds a requestState it minted stays valid
    #: For benchmarks only (`mcp-sandbox mcp-server --no-auth`): no token is read or checked; every request is
    #: served as one anonymous caller with every scope, in the tenant of the first trusted issuer.
    no_auth: bool = False
    #: The TLS listener's port (client certificates of the loopback CA requested: RFC 8705), and the CA's
    #: directory; None: no TLS listener.
    tls_port: int | None = None
    tls_dir: Path | None = None
    #: Issuers whose RFC 7662 endpoint their metadata does not name: the stack's Hydras (it is on their admin API).
    introspection_endpoints: dict[str, str] = field(default_factory=dict)
    #: The tenant each configured issuer stands for, where the settings know it (a realm of the sandbox's Keycloak,
    #: a sandbox tenant's Hydra); the broker's trust list names the tenants made later.
    tenant_names: dict[str, str] = field(default_factory=dict)

    @cached_property  # asked on every request (challenges name it)
    def resource_metadata_url(self) -> str:
        """RFC 9728 §3.1: the well-known path inserted between the host and the resource's path."""
        return str(build_resource_metadata_url(AnyHttpUrl(self.canonical_url)))

    @classmethod
    def for_stack(cls, settings: Settings) -> ServerOptions:
        """The stack's server for ``Settings.mcp_auth_mode``: its port and URL, the sandbox tenants, the broker (whose
        trust list adds each tenant made later, with the pool Hydra it lends a tenant on Hydra)."""
        address = settings.mcp_server(settings.mcp_auth_mode)
        return cls.standalone(
            settings,
            issuers=[
                *(settings.issuer(tenant) for tenant in settings.tenants),
                *(hydra.issuer for hydra in settings.hydras if hydra not in settings.hydra_pool_addresses),
            ],
            port=address.port,
            mode=settings.mcp_auth_mode,
            broker_url=settings.broker_url,
            canonical_url=address.url,
            tls_port=address.tls_port,
        )

    @classmethod
    def standalone(
        cls,
        settings: Settings,
        *,
        issuers: list[str],
        port: int,
        mode: ModeName,
        broker_url: str | None,
        canonical_url: str | None = None,
        no_auth: bool = False,
        tls_port: int | None = None,
    ) -> ServerOptions:
        """A server on ``settings.host:port``; its canonical URL follows from them unless given. An issuer may be
        given as ``TENANT=URL`` to name the tenant it stands for; a bare URL is named by the settings when it is one
        of the sandbox's own (else its callers' tenant is the URL itself)."""
        named = [_named(entry) for entry in issuers]
        issuers = [url for url, _ in named]
        given = {url: name for url, name in named if name}
        if mode not in MODES:
            raise SandboxError(f"unknown token validation mode {mode!r}", f"use one of: {', '.join(MODES)}")
        for issuer in issuers:
            require_loopback(issuer, "issuer")
        if broker_url is not None:
            broker_url = require_loopback(broker_url, "broker URL").rstrip("/")
        if not issuers and broker_url is None:
            raise SandboxError(
                "the MCP server trusts no issuer", "name one with --issuer, or a broker with --broker-url"
            )
        secrets = Secrets(settings)
        signer_jwks = settings.mcp_events_signer_jwks_url
        transmitter = (settings.broker_public_url or broker_url or "").rstrip("/") or None
        if no_auth and not issuers:
            raise SandboxError("a server without auth needs the tenant its caller acts in", "name it with --issuer")
        if MODES[mode].receives_events and transmitter is None:
            raise SandboxError(
                "jwt+events mode needs the broker that transmits revocation events",
                "pass --broker-url (its /.well-known/ssf-configuration describes the stream)",
            )
        for url, what in ((signer_jwks, "events signer JWKS URL"), (transmitter, "SSF transmitter URL")):
            if url is not None:
                require_loopback(url, what)
        introspection_secret = settings.mcp_introspection_secret or secrets.get(RESOURCE_SERVER_SECRET)
        if mode == "introspect" and not introspection_secret:
            raise SandboxError(
                "introspect mode needs this server's introspection client secret",
                f"set SANDBOX_MCP_INTROSPECTION_SECRET, or start the stack (stack secret {RESOURCE_SERVER_SECRET!r})",
            )
        host = settings.host
        authority = f"[{host}]" if ":" in host else host
        return cls(
            canonical_url=canonical_url or f"http://{authority}:{port}/mcp",
            host=host,
            port=port,
            mode=mode,
            issuers=tuple(issuers),
            broker_url=broker_url,
            events_signer_jwks_url=signer_jwks,
            transmitter_url=transmitter if MODES[mode].receives_events else None,
            revocation_journal=settings.state_dir / "mcp-server" / f"revocations-{port}.jsonl"
            if MODES[mode].receives_events
            else None,
            introspection_secret=introspection_secret,
            introspection_endpoints={h.issuer: f"{h.admin_url}/admin/oauth2/introspect" for h in settings.hydras},
            tenant_names={
                issuer: name for issuer in issuers if (name := given.get(issuer) or settings.tenant_named_by(issuer))
            },
            usage_secret=secrets.get_or_create(USAGE_INGEST_SECRET) if broker_url else None,
            tools_file=settings.tools_file,
            algorithms=settings.mcp_token_algorithms,
            base_scopes=settings.mcp_base_scopes,
            leeway=settings.mcp_leeway,
            max_token_lifetime=settings.mcp_max_token_lifetime,
            introspection_cache_ttl=settings.mcp_introspection_cache_ttl,
            jwks_refetch_interval=settings.mcp_jwks_refetch_interval,
            jwks_max_age=settings.mcp_jwks_max_age,
            request_state_ttl=settings.mcp_request_state_ttl,
            trust_refetch_interval=settings.mcp_trust_refetch_interval,
            usage_flush_interval=settings.mcp_usage_flush_interval,
            denied_call_limit=settings.mcp_denied_call_limit,
            denied_call_window=settings.mcp_denied_call_window,
            no_auth=no_auth,
            tls_port=tls_port,
            tls_dir=settings.tls_dir if tls_port is not None else None,
        )


def _named(entry: str) -> tuple[str, str | None]:
    """``TENANT=URL`` as (URL, TENANT); a bare URL as (URL, None). An issuer URL has no ``=`` before its scheme."""
    name, sep, url = entry.partition("=")
    if sep and name and ":" not in name and "/" not in name:
        return url, name
    return entry, None
