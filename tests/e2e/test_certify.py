"""certify against the reference MCP server and against deliberately broken copies of it.

Every server here is the reference server's real ASGI app (``build_app``), served in-process on the same
loopback port one after the other, trusting the stack's tenants, its upstream (trust list, signing keys of
revocation events, usage reports) going through certify's upstream watch to the stack's broker. One World
(agents, the published key, the foreign realm) serves all the runs of a module.

The intact server passes every check of both revisions, each one examined (both halves of jwks-rollover; on
2026-07-28 request-state with the reference server's analytics.export, which asks which format to export in);
each broken one (a flag each: one defect) is caught, on its revision, by the check that names its defect and by
no other one. Between them they make every check fail but `prm-served`, `401-no-token` and `positive`: their
defects break other requirements at the same time (no metadata leaves the challenge's `resource_metadata`
pointing nowhere; serving requests without a token serves query tokens too).
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
from sandbox.certify.checks import checks_for
from sandbox.certify.manifest import ToolProbe, Upstream, load_manifest
from sandbox.certify.model import CheckResult
from sandbox.certify.report.checks_json import checks_json
from sandbox.certify.revision import REVISIONS, STATELESS, Revision
from sandbox.certify.runner import run_checks
from sandbox.certify.world import World
from sandbox.mcp_server.app import build_app
from sandbox.mcp_server.options import ServerOptions
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack.ports import free_port

pytestmark = pytest.mark.xdist_group("certify-world")  # one worker, one World for every server of the module

#: A broken server may leave a check nothing to examine; that check then says so (SKIPPED), and no other does.
SKIPPED_WITH = {"no WWW-Authenticate": {"401-scope-hint"}, "tools not scoped": {"403-scope"}}
#: What the intact server leaves unexamined on each revision, and why: nothing.
NOT_EXAMINED: dict[Revision, dict[str, str]] = {}
#: Seconds the test's server keeps its issuers' keys, and what the manifest declares for it.
JWKS_MAX_AGE, KEY_CACHE = 3.0, 12.0
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
    "sessions bound to the tenant only": {
        "another agent of acme is not served tools/list on the owner's session",
        "another agent of acme is not served analytics.query on the owner's session",
    },
    "requestState not bound to the caller": {
        "the requestState presented by another agent with the same scopes: the retry is not carried out",
    },
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
    upstream_watch = Upstream(port=upstream, forward_to=settings.broker_url)
    manifest = manifest.model_copy(update={"upstream": upstream_watch, "key_cache": KEY_CACHE})
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
    # It reaches the broker through certify's upstream watch, but takes the broker's SSF stream from the broker;
    # a withdrawn key is examined in seconds.
    options = dataclasses.replace(options, transmitter_url=settings.transmitter_url, jwks_max_age=JWKS_MAX_AGE)
    assert options.canonical_url == world.url
    app = build_app(options)
    if defect is not None and defect.wrap is not None:
        app = defect.wrap(app, options)  # type: ignore[assignment]
    with serving(app, port=options.port):
        yield


def summary(results: list[CheckResult]) -> dict[str, str]:
    return {r.id: f"{r.status}: {r.message}" for r in results if r.status != "SUCCESS"}


def unexamined(results: list[CheckResult], revision: Revision) -> dict[str, str]:
    """The checks the run did not examine, minus those the intact server leaves unexamined on the revision."""
    expected = NOT_EXAMINED.get(revision, {})
    for check_id, reason in expected.items():
        found = next(r for r in results if r.id == check_id)
        assert found.status == "SKIPPED" and reason in found.message, summary([found])
    return {k: v for k, v in summary(results).items() if k not in expected}


@pytest.mark.parametrize("revision", REVISIONS)
def test_the_reference_server_passes_every_check_of_the_revision(
    sandbox_stack: SandboxStack, world: World, monkeypatch: pytest.MonkeyPatch, revision: Revision
) -> None:
    with reference_server(sandbox_stack, world, monkeypatch):
        results = run_checks(world, revision=revision)
    assert [r.id for r in results] == [c.spec.id for c in checks_for(revision)]
    assert {r.revision for r in results} == {revision}
    assert unexamined(results, revision) == {}
    negative = [
        r for r in results if r.id not in ("prm-served", "prm-content", "positive", *NOT_EXAMINED.get(revision, {}))
    ]
    assert all(any(f.expectation.startswith("control:") for f in r.findings) for r in negative)
    upstream = next(r for r in results if r.id == "no-passthrough")
    assert "0 with a caller's token" in upstream.findings[-1].observed
    rollover = next(r for r in results if r.id == "jwks-rollover")
    assert [f.met for f in rollover.findings if "withdraws" in f.expectation] == [True]  # both halves examined
    assert [r.id for r in results if "not examined" in " ".join(r.remarks)] == []
    if revision == STATELESS:
        state = next(r for r in results if r.id == "request-state")
        assert [f.expectation.split(":")[0] for f in state.findings if not f.expectation.startswith("control:")] == [
            "one character of the requestState changed",
            "the requestState presented by another agent with the same scopes",
            "the requestState presented after its lifetime (5 s)",
        ]
    assert not world.known.found_in(checks_json(results, world.url))  # evidence shows no token in full


def test_without_a_revision_certify_asks_the_server_and_takes_the_newest(
    sandbox_stack: SandboxStack, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with reference_server(sandbox_stack, world, monkeypatch):
        assert world.newest_revision() == STATELESS
        results = run_checks(world, checks_for(STATELESS)[:1])
    assert [(r.id, r.revision) for r in results] == [("prm-served", STATELESS)]


def test_tool_scope_with_one_declared_scope_is_not_examined_and_says_why(
    sandbox_stack: SandboxStack, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = {"invoices.list": ToolProbe(scope="mcp:tool:invoices.read")}
    one = world.manifest.model_copy(update={"tools": tools, "tenant_data": None})
    monkeypatch.setattr(world, "manifest", one)
    tool_scope = [c for c in checks_for(STATELESS) if c.spec.id == "tool-scope"]
    with reference_server(sandbox_stack, world, monkeypatch):
        [result] = run_checks(world, tool_scope, revision=STATELESS)
    assert result.status == "SKIPPED" and "declares one scope (mcp:tool:invoices.read)" in result.message


@pytest.mark.parametrize("name", list(DEFECTS))
def test_a_broken_server_is_caught_by_the_check_of_its_defect_and_no_other(
    sandbox_stack: SandboxStack, world: World, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    defect, check_id, revision = DEFECTS[name]
    defect.patch(monkeypatch)
    with reference_server(sandbox_stack, world, monkeypatch, defect):
        results = run_checks(world, revision=revision)
    by_id = {r.id: r for r in results}
    failing = {r.id for r in results if r.status in ("FAILURE", "WARNING")}
    assert failing == {check_id}, summary(results)
    assert by_id[check_id].status == ("WARNING" if by_id[check_id].spec.level == "SHOULD" else "FAILURE")
    skipped = {r.id for r in results if r.status == "SKIPPED"} - set(NOT_EXAMINED.get(revision, {}))
    assert skipped == SKIPPED_WITH.get(name, set()), summary(results)
    if name in UNMET:
        assert {f.expectation for f in by_id[check_id].findings if not f.met} == UNMET[name]
