"""The certify manifest: what certify must know about the server under test, written by its vendor.

Each tool's scope and a probe call (arguments that make a harmless call), the revocation mode and its
budget, a tenant-data probe, and an upstream certify may watch. Without a manifest, certify reads the tools
and scopes of the reference server from the tool map (``fixtures/tools.yaml``), each probed with no arguments
(a per-environment tool with the first environment), and skips the checks that need the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.loopback import is_loopback_url
from sandbox.modes import MODES, ModeName
from sandbox.toolmap import ToolMap
from sandbox.yamlfile import load_yaml

MARKER = "{marker}"
#: The lifetime of the revoked agent's token in ``jwt`` mode.
DEFAULT_JWT_LIFETIME = 20
#: What certify grants a server that does not say: an introspection cache of up to 8 s, a clock leeway of 7 s.
ASSUMED_CACHE_TTL = 8.0
ASSUMED_LEEWAY = 7.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolProbe(_Strict):
    scope: str = Field(min_length=1, description="The one scope a call of this tool (with these arguments) needs.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="A harmless call of the tool.")


class Call(_Strict):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class TenantProbe(_Strict):
    """``write`` stores a unique marker (``{marker}`` in its arguments); ``read`` must show it to its tenant only."""

    write: Call
    read: Call


class Revocation(_Strict):
    mode: ModeName
    budget: float | None = Field(None, gt=0, description="Seconds from the revoke to the first 401.")
    events_url: str | None = Field(None, description="jwt+events: where the broker pushes revocation events.")
    token_lifetime: int | None = Field(None, gt=0, le=300, description="jwt: the revoked agent's token lifetime.")
    role: str | None = Field(None, description="The broker role of the revoked agent (default: one needing no MFA).")
    environment: str | None = None

    @property
    def lifetime(self) -> int | None:
        return self.token_lifetime or (DEFAULT_JWT_LIFETIME if self.mode == "jwt" else None)

    @property
    def seconds(self) -> float:
        if self.budget is not None:
            return self.budget
        return MODES[self.mode].budget(
            token_remaining=float(self.lifetime or DEFAULT_JWT_LIFETIME),
            cache_ttl=ASSUMED_CACHE_TTL,
            leeway=ASSUMED_LEEWAY,
        )


class RequestStateProbe(_Strict):
    """A call answered with an InputRequiredResult carrying a ``requestState``, and the ``inputResponses`` that
    complete it on the retry."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    responses: dict[str, Any] = Field(default_factory=dict, description="The inputResponses of the retry.")
    lifetime: float | None = Field(None, gt=0, description="Seconds a requestState stays valid.")


class Upstream(_Strict):
    """A loopback port certify listens on while it runs; the server sends its upstream traffic there."""

    port: int = Field(gt=0, lt=65536)
    forward_to: str | None = Field(None, description="Pass each request on to this URL (and its answer back).")


class Manifest(_Strict):
    tenants: list[str] = Field(default_factory=list, description="Tenant realms: the first is home, the second other.")
    tools: dict[str, ToolProbe] = Field(min_length=1)
    revocation: Revocation | None = None
    tenant_data: TenantProbe | None = None
    upstream: Upstream | None = None
    new_key_budget: float = Field(
        30.0, gt=0, description="Seconds the server may take to accept a key its issuer newly publishes."
    )
    key_cache: float | None = Field(
        None, gt=0, description="Seconds the server may go on accepting a key its issuer withdrew (its JWKS cache)."
    )
    request_state: RequestStateProbe | None = Field(
        None, description="2026-07-28: a tool that asks for more input (multi-round-trip) with a requestState."
    )

    def scopes(self) -> list[str]:
        return list(dict.fromkeys(tool.scope for tool in self.tools.values()))

    def with_tenants(self, tenants: list[str]) -> Manifest:
        return self if self.tenants else self.model_copy(update={"tenants": list(tenants)})


def default_manifest(settings: Settings) -> Manifest:
    """The reference server's tools and scopes from the tool map; nothing else declared."""
    toolmap = ToolMap.load(settings.tools_file)
    tools = {}
    for name, tool in toolmap.tools.items():
        environment = toolmap.environments[0] if tool.per_environment and toolmap.environments else None
        arguments = {"environment": environment} if environment else {}
        tools[name] = ToolProbe(scope=tool.scope_for(environment), arguments=arguments)
    return Manifest(tenants=list(settings.tenants), tools=tools)


def load_manifest(path: Path, settings: Settings) -> Manifest:
    """The manifest at ``path``, or a FileError naming the line of the first problem."""
    document = load_yaml(path)
    manifest = document.validate(Manifest).with_tenants(settings.tenants)
    if manifest.request_state is not None and manifest.request_state.tool not in manifest.tools:
        raise document.error(
            ("request_state", "tool"), f"request_state.tool {manifest.request_state.tool!r} is not a tool above",
            "name one of the tools listed under `tools:`",
        )  # fmt: skip
    if manifest.tenant_data is not None:
        for side in ("write", "read"):
            call: Call = getattr(manifest.tenant_data, side)
            if call.tool not in manifest.tools:
                raise document.error(
                    ("tenant_data", side, "tool"), f"tenant_data.{side}.tool {call.tool!r} is not a tool above",
                    "name one of the tools listed under `tools:`",
                )  # fmt: skip
        if MARKER not in repr(manifest.tenant_data.write.arguments):
            raise document.error(
                ("tenant_data", "write", "arguments"), "tenant_data.write.arguments has no {marker}",
                "put {marker} in a value the read call shows back (certify replaces it with a unique string)",
            )  # fmt: skip
    loopback_urls = {
        ("upstream", "forward_to"): manifest.upstream.forward_to if manifest.upstream else None,
        ("revocation", "events_url"): manifest.revocation.events_url if manifest.revocation else None,
    }
    for location, url in loopback_urls.items():
        if url is not None and not is_loopback_url(url):
            raise document.error(
                location, f"{'.'.join(location)} {url!r} is not an http(s) URL on loopback",
                "the sandbox only talks to 127.0.0.0/8 or ::1",
            )  # fmt: skip
    if not manifest.tenants:
        raise SandboxError("the manifest names no tenant and the settings have none", "add `tenants: [acme]`")
    return manifest
