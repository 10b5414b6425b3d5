"""Ory Hydra as stack components: one Hydra per tenant (its own issuer, keys and database), on loopback.

Each starts like Keycloak: prepared once (the binary, :mod:`sandbox.stack.hydra_build`), then on every start an
empty database of its own on the stack's PostgreSQL (:mod:`sandbox.stack.postgres`), ``hydra migrate sql up``,
and ``hydra serve all`` with its public and admin APIs bound to the stack's host. Access tokens are JWTs
(``strategies.access_token: jwt``, scopes as Hydra's ``scp`` array); a client-credentials request without
``scope`` gets every scope the client is allowed, as an agent's default scopes do in Keycloak. The system secret
(what Hydra encrypts its keys with) is a stack secret.
"""

from __future__ import annotations

from sandbox.config import HydraAddress, Settings
from sandbox.idp.hydra import PUBLISHED_KEY_SET
from sandbox.stack.component import Port, ProcessComponent, Report
from sandbox.stack.hydra_build import HydraBuild
from sandbox.stack.postgres import PostgresServer
from sandbox.stack.state import ComponentState
from sandbox.stack_secrets import Secrets

#: Seconds a ``hydra migrate sql up`` of an empty database may take on a busy machine.
MIGRATE_TIMEOUT = 300


def hydra_secret_name(tenant: str) -> str:
    """The stack secret of a tenant's Hydra: the system secret it encrypts its keys and cookies with."""
    return f"hydra/{tenant}/system"


class Hydra(ProcessComponent):
    """One tenant's Hydra: ``hydra serve all`` on a fresh database of its own on the stack's PostgreSQL."""

    def __init__(self, settings: Settings, tenant: str, database: PostgresServer) -> None:
        super().__init__(settings)
        self.address: HydraAddress = settings.hydra(tenant)
        self.tenant = tenant
        self.name = f"hydra-{tenant}"
        self.needs = (database.name,)
        self.database = database
        self.build = HydraBuild(settings)

    @property
    def url(self) -> str:
        return self.address.issuer

    @property
    def health_url(self) -> str:
        return f"{self.address.admin_url}/health/ready"

    @property
    def database_name(self) -> str:
        return self.name.replace("-", "_")

    def ports(self) -> list[Port]:
        return [
            Port(self.address.public_port, f"{self.name} public", "SANDBOX_HYDRA_PORT"),
            Port(self.address.admin_port, f"{self.name} admin", "SANDBOX_HYDRA_PORT"),
        ]

    def prepare(self, report: Report) -> None:
        self.build.ensure_built(report)

    def command(self) -> list[str]:
        # --dev: the issuer is plain HTTP on loopback (Hydra otherwise insists on TLS for its public URLs).
        # --sqa-opt-out: no usage telemetry; nothing leaves loopback.
        return [str(self.build.binary), "serve", "all", "--dev", "--sqa-opt-out"]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update(
            DSN=self.database.dsn(self.database_name),
            SECRETS_SYSTEM=Secrets(self.settings).get_or_create(hydra_secret_name(self.tenant)),
            URLS_SELF_ISSUER=self.address.issuer,
            SERVE_PUBLIC_HOST=self.address.host,
            SERVE_PUBLIC_PORT=str(self.address.public_port),
            SERVE_ADMIN_HOST=self.address.host,
            SERVE_ADMIN_PORT=str(self.address.admin_port),
            STRATEGIES_ACCESS_TOKEN="jwt",
            # Its JWKS also publishes a set it never signs with: where certify publishes keys it holds.
            WEBFINGER_JWKS_BROADCAST_KEYS=f"hydra.jwt.access-token,{PUBLISHED_KEY_SET}",
            OAUTH2_CLIENT_CREDENTIALS_DEFAULT_GRANT_ALLOWED_SCOPE="true",
            TTL_ACCESS_TOKEN=f"{self.settings.hydra_access_token_lifetime}s",
            LOG_LEVEL="warn",
            LOG_LEAK_SENSITIVE_VALUES="false",
            SQA_OPT_OUT="true",  # as --sqa-opt-out, for every command
        )
        return env

    def start(self) -> ComponentState:
        # Every start is a clean IdP: a new database, new signing keys.
        self.database.recreate_database(self.database_name)
        self._migrate()
        state = super().start()
        state.details.update(tenant=self.tenant, issuer=self.address.issuer, admin_url=self.address.admin_url)
        return state

    def _migrate(self) -> None:
        self.run_once(
            [str(self.build.binary), "migrate", "sql", "up", "--read-from-env", "--yes"],
            env=self.environment(),
            timeout=MIGRATE_TIMEOUT,
            what="`hydra migrate sql up`",
            fix=f"read its log (mcp-sandbox logs {self.name}); delete {self.build.home} to build Hydra afresh",
        )
