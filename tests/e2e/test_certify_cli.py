"""`mcp-sandbox certify` as a vendor runs it: against the stack's own reference servers (one per revocation mode),
with the example manifest (its revocation block set to the server's mode), with --strict, on each revision,
writing every report; a stale expected failure; errors a user can cause. Afterwards nothing certify made is left
in Keycloak (the agents its evidence names, its published keys, its foreign realm)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from sandbox.certify.checks import checks_for
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.pytest_plugin import SandboxStack

MCP_SANDBOX = str(Path(sys.executable).parent / "mcp-sandbox")
FULL_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{20,}")
#: The example manifest's revocation block for each of the stack's servers: jwt+events as written; introspect
#: within the cache TTL (5 s) and slack; jwt within a 5 s token's life, the leeway (5 s) and slack.
REVOCATION = {
    "jwt+events": None,
    "introspect": "revocation:\n  mode: introspect\n  budget: 10\n",
    "jwt": "revocation:\n  mode: jwt\n  token_lifetime: 5\n  budget: 15\n",
}
#: Every check against the jwt+events and introspect servers; the jwt server (the same code but for how it
#: verifies) for the checks its mode changes.
ONLY = {"jwt": ["positive", "401-expired", "401-audience", "revocation"]}
#: The runs: the jwt+events server on both revisions, the others on one each (their code is the same).
RUNS = [("jwt+events", "2026-07-28"), ("jwt+events", "2025-11-25"), ("introspect", "2026-07-28"), ("jwt", "2025-11-25")]
LAST_LINE = re.compile(r"^certified for (\S+) \(strict\): MUST (\d+)/(\d+), SHOULD (\d+)/(\d+), product (\d+)/(\d+)")


def certify(stack: SandboxStack, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCP_SANDBOX, "certify", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **stack.settings.as_environment(), "COLUMNS": "200"},
    )


@pytest.mark.parametrize(("mode", "revision"), RUNS)
def test_certify_the_stacks_reference_servers_strictly_with_the_example_manifest(
    sandbox_stack: SandboxStack, tmp_path: Path, mode: str, revision: str
) -> None:
    settings = sandbox_stack.settings
    manifest = settings.fixtures_dir / "certify" / "reference-server.yaml"
    if REVOCATION[mode] is not None:
        text = re.sub(r"revocation:\n(  .*\n)+", str(REVOCATION[mode]), manifest.read_text())
        assert f"mode: {mode}\n" in text
        manifest = tmp_path / f"{mode}.yaml"
        manifest.write_text(text)
    reports = {
        "--json": tmp_path / "checks.json",
        "--junit-xml": tmp_path / "junit.xml",
        "--html": tmp_path / "r.html",
        "--sarif": tmp_path / "certify.sarif",
    }
    url = settings.mcp_server(mode).url
    only = [a for check_id in ONLY.get(mode, []) for a in ("--check", check_id)]
    options = ("--spec", revision, "--strict", "--manifest", str(manifest), *only)
    run = certify(sandbox_stack, "--url", url, *options, *[a for p in reports.items() for a in p])
    assert run.returncode == 0, run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    counted = LAST_LINE.match(last)
    assert counted and counted[1] == revision, last
    assert all(counted[i] == counted[i + 1] for i in (2, 4, 6)), last  # every examined check passed
    checks = json.loads(reports["--json"].read_text())
    statuses = {c["id"]: c["status"] for c in checks}
    ids = [c.spec.id for c in checks_for(revision)]  # type: ignore[arg-type]
    assert list(statuses) == [i for i in ids if mode not in ONLY or i in ONLY[mode]]  # the table's order
    assert {c["metadata"]["revision"] for c in checks} == {revision}
    # Every check of the revision is examined, but no-passthrough: the stack's server sends its upstream traffic
    # to the broker directly, not through a port certify watches, and the last line says so.
    unexamined = {i for i, status in statuses.items() if status == "SKIPPED"}
    statuses = {i: status for i, status in statuses.items() if i not in unexamined}
    assert unexamined == ({"no-passthrough"} if mode not in ONLY else set())
    reasons = {c["id"]: c.get("errorMessage", "") for c in checks if c["id"] in unexamined}
    assert all("the manifest declares no upstream" in reason for reason in reasons.values()), reasons
    assert ("not examined: " in last) == bool(unexamined) and all(f"{i} (" in last for i in unexamined)
    assert "partly examined" not in last, last  # both halves of jwks-rollover, request-state's lapse
    assert set(statuses.values()) == {"SUCCESS"}, {c["id"]: c.get("errorMessage") for c in checks}
    remarks = {c["id"]: c["details"].get("remarks", []) for c in checks}
    assert not [i for i, said in remarks.items() if "not examined" in " ".join(said)], remarks
    skipped = len(unexamined)
    if mode == "jwt":
        revocation = next(c for c in checks if c["id"] == "revocation")
        assert "measured the token's expiry" in " ".join(revocation["details"]["remarks"])
    sarif = json.loads(reports["--sarif"].read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"] == []
    assert [rule["id"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"]] == [c["id"] for c in checks]
    suite = ET.parse(reports["--junit-xml"]).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(checks)), "0", str(skipped))
    page = reports["--html"].read_text()
    assert "mcp-sandbox certify: passed" in page and all(f'id="{c["id"]}"' in page for c in checks)
    for report in reports.values():
        assert not FULL_JWT.search(report.read_text()), report  # tokens appear as header and claims only

    # Nothing certify made is left: its agents, the key it published, the realm it made up.
    used = {
        token["claims"]["azp"]
        for c in checks
        for exchange in c["details"]["evidence"]
        for auth in exchange["request"].get("authorization", [])
        if (token := auth.get("token", {})).get("claims", {}).get("azp", "").startswith("certify-")
    }
    assert used
    adapter = KeycloakAdapter.from_settings(settings)

    async def leftovers() -> list[str]:
        found = []
        for tenant in sandbox_stack.tenants:
            found += [c for c in used if await adapter.find_client(tenant, c)]
        return found

    assert asyncio.run(leftovers()) == []
    findings = " ".join(f["expectation"] for c in checks for f in c["details"]["findings"])
    kid = re.search(r"kid (\S+), published by certify", findings)
    assert kid
    jwks = httpx.get(f"{settings.issuer('acme')}/protocol/openid-connect/certs").json()
    assert kid[1] not in {key["kid"] for key in jwks["keys"]}
    realm = re.search(r"the realm (certify-foreign-[0-9a-f]+)", findings)
    assert realm or "401-issuer" not in statuses
    if realm:
        assert not asyncio.run(KeycloakAdapter.from_settings(settings).realm_exists(realm[1]))


def test_a_stale_expected_failure_fails_the_run(sandbox_stack: SandboxStack, tmp_path: Path) -> None:
    """The control: the same check passes, exit 0, in the run against the jwt+events server above."""
    baseline = tmp_path / "baseline.yml"
    baseline.write_text("server:\n  - mcp-auth:401-no-token\n")
    run = certify(
        sandbox_stack, "--url", sandbox_stack.settings.mcp_url, "--check", "401-no-token", "--expected-failures",
        str(baseline),
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "stale expected failures" in run.stdout and "401-no-token" in run.stdout


def test_errors_a_user_can_cause_are_one_line_and_exit_2(sandbox_stack: SandboxStack, tmp_path: Path) -> None:
    url = sandbox_stack.settings.mcp_url
    manifest = tmp_path / "m.yaml"
    manifest.write_text("tools:\n  invoices.list:\n    scope: mcp:tool:invoices.read\n    argumnts: {}\n")
    cases = {
        ("--url", url, "--manifest", str(manifest)): f"{manifest}:4: tools.invoices.list.argumnts is not a known",
        ("--url", "http://example.com/mcp"): "is not an http(s) URL on loopback",
        ("--url", url, "--check", "401-everything"): "no check named 401-everything",
        ("--url", url, "--spec", "2026-07-28", "--check", "session-binding"): "not a check of MCP 2026-07-28",
    }
    for arguments, words in cases.items():
        run = certify(sandbox_stack, *arguments)
        assert run.returncode == 2, (arguments, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], run.stderr
