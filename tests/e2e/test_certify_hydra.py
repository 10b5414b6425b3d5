"""certify against the reference MCP server trusting an Ory Hydra tenant's issuer, certify's agents on that Hydra.

The home tenant is made through the broker on Hydra (a pool Hydra lent to it; its people stay on Keycloak), the
other tenant is the stack's Keycloak tenant acme, and the reference server (its real ASGI app, in-process)
trusts both issuers. certify publishes the keys it holds in the Hydra's passive key set, makes its agents as
Hydra clients that ask for the server with ``audience=``, and revokes a broker-provisioned Hydra agent. Every
check of 2026-07-28 passes, except the one Hydra lacks the capability for: it ends as skipped, naming Hydra and
why, never as a pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from broker.servers import serving

from sandbox.certify.checks import checks_for
from sandbox.certify.manifest import Upstream, load_manifest
from sandbox.certify.revision import STATELESS
from sandbox.certify.runner import run_checks
from sandbox.certify.world import World
from sandbox.harness.tenants import Tenant, create_tenant, delete_tenant
from sandbox.idp.capabilities import HYDRA
from sandbox.mcp_server.app import build_app
from sandbox.mcp_server.options import ServerOptions
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack.ports import free_port

#: The one check Hydra cannot support, and the reason it says.
NOT_SUPPORTED = {"sender-constrained": HYDRA.unsupported_reason("dpop_binding")}
#: Seconds the server keeps its issuers' keys, and what the manifest declares for it (as tests/e2e/test_certify.py).
JWKS_MAX_AGE, KEY_CACHE = 3.0, 12.0


def two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


@pytest.fixture(scope="module")
def hydra_tenant(sandbox_stack: SandboxStack) -> Iterator[Tenant]:
    settings = sandbox_stack.settings
    assert settings.hydra_pool, "the test session's stack lends Hydras"
    tenant = create_tenant(settings, {"owner": False}, prefix="certify-hydra", idp="hydra")
    try:
        yield tenant
    finally:
        delete_tenant(settings, tenant.name)


def test_certify_passes_a_server_that_trusts_a_hydra_issuer_with_its_agents_on_hydra(
    sandbox_stack: SandboxStack, hydra_tenant: Tenant
) -> None:
    settings = sandbox_stack.settings
    assert hydra_tenant.idp == "hydra" and hydra_tenant.agents_issuer.endswith("/")
    port, upstream = two_free_ports()
    manifest = load_manifest(settings.fixtures_dir / "certify" / "reference-server.yaml", settings)
    manifest = manifest.model_copy(
        update={
            "tenants": [hydra_tenant.name, "acme"],
            "upstream": Upstream(port=upstream, forward_to=settings.broker_url),
            "key_cache": KEY_CACHE,
        }
    )
    options = ServerOptions.standalone(
        settings,
        issuers=[hydra_tenant.agents_issuer, settings.issuer("acme")],
        port=port,
        mode="jwt+events",
        broker_url=f"http://127.0.0.1:{upstream}",
    )
    options = dataclasses.replace(options, transmitter_url=settings.transmitter_url, jwks_max_age=JWKS_MAX_AGE)
    with World(settings, manifest, options.canonical_url) as world, serving(build_app(options), port=port):
        assert world.on_hydra() and world.issuer() == hydra_tenant.agents_issuer
        assert not world.on_hydra("acme")
        results = run_checks(world, revision=STATELESS)
    assert [r.id for r in results] == [c.spec.id for c in checks_for(STATELESS)]
    outcome = {r.id: (r.status, r.message) for r in results if r.status != "SUCCESS"}
    assert set(outcome) == set(NOT_SUPPORTED), outcome
    for check_id, reason in NOT_SUPPORTED.items():
        status, message = outcome[check_id]
        assert status == "SKIPPED" and reason is not None and message.startswith(reason), outcome
    rollover = next(r for r in results if r.id == "jwks-rollover")
    assert [f.met for f in rollover.findings if "withdraws" in f.expectation] == [True]  # both halves examined
    assert [r.id for r in results if "not examined" in " ".join(r.remarks)] == []
