"""Keycloak as a stack component: run from its distribution by a local JDK, or an existing server.

The options and the bootstrap admin are defined here once, for every runtime: the local process,
the container (:mod:`sandbox.stack.keycloak_container`) and ``compose/docker-compose.yml``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from sandbox.config import Settings
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.provider import IdpError
from sandbox.idp.realm import ADMIN_CLIENT_ID, ADMIN_USERNAME, DEMO_CLIENT_ID, create_tenant
from sandbox.loopback_ca import IssuedCertificate, LoopbackCA
from sandbox.stack import process
from sandbox.stack.component import Component, Port, ProcessComponent, Report
from sandbox.stack.distribution import KeycloakDistribution, build_options, run_files_options
from sandbox.stack.java import Jdk, find_jdk
from sandbox.stack.keycloak_seed import BootstrapAdmin, SeededDatabase, h2_url
from sandbox.stack.ports import is_free
from sandbox.stack.readiness import answers, wait_for_http
from sandbox.stack.state import ComponentState
from sandbox.stack_secrets import Secrets


def create_sandbox_tenants(settings: Settings, report: Report) -> dict[str, str]:
    """Create the configured tenant realms unless they exist; return their issuers."""
    secrets = Secrets(settings)

    async def create_one(adapter: KeycloakAdapter, tenant: str) -> None:
        if not await adapter.realm_exists(tenant):
            await create_tenant(
                adapter, settings, tenant, demo_secret=secrets.get_or_create(f"{tenant}/{DEMO_CLIENT_ID}")
            )
            report(f"created tenant realm {tenant}")

    async def create_all() -> None:
        adapter = KeycloakAdapter.from_settings(settings, timeout=startup_call_timeout(settings))
        await asyncio.gather(*(create_one(adapter, tenant) for tenant in settings.tenants))

    deadline = time.monotonic() + settings.startup_timeout
    while True:
        try:
            asyncio.run(create_all())
            break
        except IdpError as exc:
            # Ready is not yet bootstrapped: Keycloak answers 503 until its bootstrap admin exists.
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            time.sleep(1)
    return {tenant: settings.issuer(tenant) for tenant in settings.tenants}


def startup_call_timeout(settings: Settings) -> int:
    """How long one Admin API call may take while the stack configures itself: a Keycloak that has only just
    started, on a busy machine, answers its first calls slowly; within the start-up bound, that is no failure."""
    return max(30, int(settings.startup_timeout))


def server_options(settings: Settings) -> list[str]:
    """Start-time options of every Keycloak the sandbox runs: loopback only, no clustering, health on management."""
    return [
        "--cache=local",  # no JGroups clustering: nothing leaves loopback
        "--http-enabled=true",
        f"--http-host={settings.host}",
        f"--http-port={settings.keycloak_port}",
        f"--http-management-port={settings.keycloak_management_port}",
        f"--hostname={settings.keycloak_base_url}",
        "--hostname-strict=false",
        "--log=console",
    ]


def https_options(settings: Settings, server: IssuedCertificate, ca: LoopbackCA) -> list[str]:
    """Keycloak's HTTPS port on loopback, with a certificate of the sandbox's CA, requesting client certificates
    of that CA (``https-client-auth=request`` is built in): where mTLS agents take certificate-bound tokens.

    The port trusts the stack's own CA file, read where it lies in the stack's state (``https-trust-store-file``).
    Never ``truststore-paths``: that option makes Keycloak write a merged trust store into its distribution's
    ``data`` directory and trust that file, and every stack's Keycloak runs from one shared distribution: a second
    stack's Keycloak starting at the same time overwrote it, and the first then trusted the second's CA only (its
    own agents' certificates were answered with ``certificate_unknown``)."""
    return [
        f"--https-port={settings.keycloak_https_port}",
        f"--https-certificate-file={server.certificate_file}",
        f"--https-certificate-key-file={server.key_file}",
        f"--https-trust-store-file={ca.certificate_file}",
        "--https-trust-store-type=pem",
        "--http-management-scheme=http",  # health stays plain HTTP on the management port
    ]


def open_https(settings: Settings, report: Report) -> list[str]:
    """The HTTPS options when its port can be opened; otherwise none, and one line that says so."""
    if not is_free(settings.host, settings.keycloak_https_port):
        report(
            f"HTTPS port {settings.keycloak_https_port} is in use: Keycloak serves no HTTPS, so mTLS agents cannot "
            "take tokens (free it, or set SANDBOX_KEYCLOAK_HTTPS_PORT)"
        )
        return []
    ca = LoopbackCA(settings.tls_dir)
    return https_options(settings, ca.issue("keycloak", client=False), ca)


def container_command(settings: Settings) -> list[str]:
    """``kc.sh`` arguments for a Keycloak image: the official one builds itself with these at its first start;
    ours (compose/keycloak.Dockerfile) was built with the same build options, so it starts at once."""
    return ["start", *build_options(settings), *server_options(settings)]


def stack_admin(settings: Settings) -> BootstrapAdmin:
    """The stack's own admin user and admin service account (new secrets on every fresh ``up``)."""
    secrets = Secrets(settings)
    return BootstrapAdmin(
        ADMIN_USERNAME, secrets.get_or_create(ADMIN_USERNAME), ADMIN_CLIENT_ID, secrets.get_or_create(ADMIN_CLIENT_ID)
    )


def bootstrap_admin_environment(settings: Settings) -> dict[str, str]:
    """The stack's admin, for a Keycloak that creates its master realm at its first start (the containers)."""
    return stack_admin(settings).environment()


class SandboxKeycloak(Component):
    """What every Keycloak the sandbox starts has in common, whichever runtime starts it."""

    name = "keycloak"

    @property
    def url(self) -> str:
        return self.settings.keycloak_base_url

    @property
    def health_url(self) -> str:
        return self.settings.keycloak_health_url

    def ports(self) -> list[Port]:
        return [
            Port(self.settings.keycloak_port, "keycloak http", "SANDBOX_KEYCLOAK_PORT"),
            Port(
                self.settings.keycloak_management_port,
                "keycloak management",
                "SANDBOX_KEYCLOAK_MANAGEMENT_PORT",
            ),
        ]

    def configure(self, state: ComponentState, report: Report) -> None:
        state.details["tenants"] = create_sandbox_tenants(self.settings, report)
        state.details["admin_console"] = f"{self.url}/admin/"


class LocalKeycloak(SandboxKeycloak, ProcessComponent):
    """Keycloak from the Maven distribution, built once, started optimized on loopback."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.distribution = KeycloakDistribution(self.settings)
        self.seed = SeededDatabase(self.settings, self.distribution)
        self._jdk: Jdk | None = None
        self._https: list[str] = []

    @property
    def data_dir(self) -> Path:
        return self.settings.state_dir / "keycloak"

    def prepare(self, report: Report) -> None:
        report("looking for a JDK 17+")
        self._jdk = find_jdk(self.settings)
        self.distribution.ensure_built(self._jdk, report)
        self.seed.ensure(self._jdk, report, username=ADMIN_USERNAME, client_id=ADMIN_CLIENT_ID)
        self._https = open_https(self.settings, report)

    @property
    def database_dir(self) -> Path:
        return self.data_dir / "db"

    def command(self) -> list[str]:
        return [
            str(self.distribution.kc_sh),
            "start",
            "--optimized",
            *server_options(self.settings),
            *self._https,
            f"--db-url={h2_url(self.database_dir)}",
        ]

    def environment(self) -> dict[str, str]:
        assert self._jdk is not None, "prepare() finds the JDK before start()"
        env = super().environment()
        env.update(
            JAVA_HOME=str(self._jdk.home),
            PATH=f"{self._jdk.home / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            JAVA_OPTS_APPEND=run_files_options(self.data_dir, self.seed.class_archive),
        )
        return env  # no bootstrap admin: the seeded database has one, taken over in configure()

    def clear_data(self) -> None:
        # A stack started from nothing starts from a clean IdP: reproducible tenants, no stale agents.
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def start(self) -> ComponentState:
        # The database is a copy of the seed (schema, master realm, admin), not an empty one; a Keycloak
        # restarted beside a live stack keeps the database it had, and its realms and agents with it.
        seeded = not any(self.database_dir.glob("*"))
        (self.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        if seeded:
            self.seed.copy_to(self.database_dir)
        state = super().start()
        state.details["seeded"] = seeded
        state.details["https"] = self.settings.keycloak_https_url if self._https else None
        return state

    def wait_ready(self, state: ComponentState) -> None:
        super().wait_ready(state)  # the management port says ready
        # ... and the HTTP port that configure() and every client use answers too: on a starved machine it can
        # lag behind the management port's readiness.
        assert state.process is not None
        record = state.process
        wait_for_http(
            self.name,
            f"{self.url}/realms/master/.well-known/openid-configuration",
            timeout=self.settings.startup_timeout,
            alive=lambda: process.is_alive(record),
            log=self.log_path,
        )

    def configure(self, state: ComponentState, report: Report) -> None:
        # Keycloak in a container (compose) starts from an empty database, with the stack's bootstrap admin.
        if state.details.get("seeded"):
            ours = stack_admin(self.settings)
            seeded = KeycloakAdapter(
                self.url, ADMIN_CLIENT_ID, self.seed.admin().client_secret, timeout=startup_call_timeout(self.settings)
            )
            asyncio.run(seeded.take_over_master_admin(ours.username, ours.password, ours.client_secret))
        super().configure(state, report)


class ExternalKeycloak(Component):
    """A Keycloak the user runs (``SANDBOX_KEYCLOAK_URL``): checked and used, never started or stopped."""

    name = "keycloak"

    def start(self) -> ComponentState:
        return ComponentState(
            name=self.name,
            url=self.settings.keycloak_base_url,
            health_url=f"{self.settings.keycloak_base_url}/realms/master/.well-known/openid-configuration",
            log="(external: see its own logs)",
            ports={},
            details={"external": True},
        )

    def wait_ready(self, state: ComponentState) -> None:
        wait_for_http(
            self.name,
            state.health_url,
            timeout=self.settings.startup_timeout,
            alive=lambda: True,
            log=self.log_path,
        )

    def configure(self, state: ComponentState, report: Report) -> None:
        """Prove the admin service account works; tenants are made per scenario, never by default here."""
        asyncio.run(KeycloakAdapter.from_settings(self.settings).realm_exists("master"))

    def is_running(self, state: ComponentState) -> bool:
        return answers(state.health_url)

    def stop(self, state: ComponentState) -> None:
        """Not ours to stop; the tenants we made stay until the user removes them."""
