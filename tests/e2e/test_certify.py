"""certify against the reference MCP server and against deliberately broken copies of it.

Every server here is the reference server's real ASGI app (``build_app``), served in-process on the same
loopback port one after the other, trusting the stack's tenants, its upstream (trust list, signing keys of
revocation events, usage reports) going through certify's upstream watch to the stack's broker. One World
(agents, the published key, the foreign realm) serves all the runs of a module.

The intact server passes every check; each broken one (a flag each: one defect) is caught by the check that
names its defect and by no other one. Between them they make every check fail but `prm-served`, `401-no-token`
and `positive`, whose defects break other requirements at the same time (no metadata leaves the challenge's
`resource_metadata` pointing nowhere; serving requests without a token serves query tokens too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from broken_mcp import DEFECTS, Defect
from broker.servers import serving

from sandbox.certify import forge
from sandbox.certify.checks import CHECK_IDS
from sandbox.certify.manifest import Upstream, load_manifest
from sandbox.certify.model import CheckResult
from sandbox.certify.report.checks_json import checks_json
from sandbox.certify.runner import run_checks
from sandbox.certify.world import World
from sandbox.mcp_server.app import build_app
from sandbox.mcp_server.options import ServerOptions
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack.ports import free_port

pytestmark = pytest.mark.xdist_group("certify-world")  # one worker, one World for every server of the module

#: A broken server may leave a check nothing to examine; that check then says so (SKIPPED), and no other does.
SKIPPED_WITH = {"no WWW-Authenticate": {"401-scope-hint"}, "tools not scoped": {"403-scope"}}
MALFORMED = {f"{label}: 401" for label in forge.malformed("h.p.s")}
#: Where the defect shows, case by case, for the checks that try many cases.
UNMET = {
    "no signature check": {
        "claims changed under the original signature: 401",
        "one bit of the signature flipped: 401",
        "the signature cut short: 401",
        "the issuer's kid, signed by a key it does not publish: 401",
    },
    "alg none accepted": {
        "alg none, no signature: 401",
        "alg None, no signature: 401",
        "alg none, the original signature kept: 401",
    },
    "400 instead of 401": MALFORMED,
    "500 on garbage": MALFORMED,
}


def two_free_ports() -> tuple[int, int]:
    first = free_port()
    for _ in range(20):
        second = free_port()
        if second != first:
            return first, second
    raise RuntimeError("no second free port")


@pytest.fixture(scope="module")
def world(sandbox_stack: SandboxStack) -> Iterator[World]:
    settings = sandbox_stack.settings
    port, upstream = two_free_ports()
    manifest = load_manifest(settings.fixtures_dir / "certify" / "reference-server.yaml", settings)
    manifest = manifest.model_copy(update={"upstream": Upstream(port=upstream, forward_to=settings.broker_url)})
    with World(settings, manifest, f"http://127.0.0.1:{port}/mcp") as made:
        yield made


@contextmanager
def reference_server(
    stack: SandboxStack, world: World, monkeypatch: pytest.MonkeyPatch, defect: Defect | None = None
) -> Iterator[None]:
    """The reference server's app on the world's URL, with the defect's piece substituted."""
    settings = stack.settings
    assert world.manifest.upstream is not None
    options = ServerOptions.standalone(
        settings,
        issuers=[settings.issuer(tenant) for tenant in stack.tenants],
        port=urlsplit(world.url).port or 0,
        mode="jwt+events",
        broker_url=f"http://127.0.0.1:{world.manifest.upstream.port}",
    )
    # It reaches the broker through certify's upstream watch, but takes the broker's SSF stream from the broker.
    options = dataclasses.replace(options, transmitter_url=settings.transmitter_url)
    assert options.canonical_url == world.url
    app = build_app(options)
    if defect is not None and defect.wrap is not None:
        app = defect.wrap(app, options)  # type: ignore[assignment]
    with serving(app, port=options.port):
        yield


def summary(results: list[CheckResult]) -> dict[str, str]:
    return {r.id: f"{r.status}: {r.message}" for r in results if r.status != "SUCCESS"}


def test_the_reference_server_passes_every_check(
    sandbox_stack: SandboxStack, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with reference_server(sandbox_stack, world, monkeypatch):
        results = run_checks(world)
    assert [r.id for r in results] == CHECK_IDS
    assert summary(results) == {}
    negative = [r for r in results if r.id not in ("prm-served", "prm-content", "positive")]
    assert all(any(f.expectation.startswith("control:") for f in r.findings) for r in negative)
    upstream = next(r for r in results if r.id == "no-passthrough")
    assert "0 with a caller's token" in upstream.findings[-1].observed
    assert not world.known.found_in(checks_json(results, world.url))  # evidence shows no token in full


@pytest.mark.parametrize("name", list(DEFECTS))
def test_a_broken_server_is_caught_by_the_check_of_its_defect_and_no_other(
    sandbox_stack: SandboxStack, world: World, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    defect, check_id = DEFECTS[name]
    defect.patch(monkeypatch)
    with reference_server(sandbox_stack, world, monkeypatch, defect):
        results = run_checks(world)
    by_id = {r.id: r for r in results}
    failing = {r.id for r in results if r.status in ("FAILURE", "WARNING")}
    assert failing == {check_id}, summary(results)
    assert by_id[check_id].status == ("WARNING" if by_id[check_id].spec.level == "SHOULD" else "FAILURE")
    assert {r.id for r in results if r.status == "SKIPPED"} == SKIPPED_WITH.get(name, set()), summary(results)
    if name in UNMET:
        assert {f.expectation for f in by_id[check_id].findings if not f.met} == UNMET[name]
